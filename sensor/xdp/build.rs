//! Compiles the XDP program (`bpf/rstwatch_xdp.c`) with clang for the bpf target.
//!
//! `CLANG` overrides the compiler (default `clang`). The object lands in `OUT_DIR` and is
//! embedded in the library with `include_bytes_aligned!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = PathBuf::from("bpf/rstwatch_xdp.c");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("rstwatch_xdp.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile {} ({s})", src.display()),
        Err(e) => panic!(
            "cannot run {clang} ({e}): the XDP program needs clang (Debian: apt-get install clang)"
        ),
    }
}
