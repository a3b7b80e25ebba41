//! rstwatch-collector: not built yet (see issue "Shipping and storage").

fn main() {
    eprintln!("rstwatch-collector: not built yet; the collector comes with the shipping issue");
    std::process::exit(2);
}
