//! `rstwatch-collector report`: the overview as one self-contained file for a ticket or
//! an e-mail — HTML with inline SVG charts and styles (no links, no script), or
//! Markdown.

pub(crate) mod markdown;

use crate::insight::{Filter, Insight, Overview};
use crate::web::page::{self, Mode};

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One self-contained HTML file with inline SVG.
    Html,
    /// Markdown tables with text sparklines.
    Markdown,
}

/// The report over `f` in `format`.
pub async fn render(i: &Insight, f: &Filter, format: Format) -> anyhow::Result<String> {
    let ov = Overview::load(i, f).await?;
    let generated = format!(
        "{} UTC by rstwatch-collector {}",
        crate::insight::filter::fmt_time(crate::log::now_us() / 1_000_000),
        env!("CARGO_PKG_VERSION")
    );
    Ok(match format {
        Format::Html => page::overview(&ov, &Mode::Report { generated }),
        Format::Markdown => markdown::render(&ov, &generated),
    })
}
