//! HTML escaping and number formatting shared by the page, the rows pages and the
//! report.

/// Text safe inside HTML elements and double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Columns that hold numbers which are names, not quantities (ports, TTLs): printed
/// as they are, never `50,912`.
pub(crate) fn is_label_column(col: &str) -> bool {
    col.ends_with("port") || col == "ttl"
}

/// `1234567` as `1,234,567`; fractions keep up to three decimals.
pub(crate) fn fmt_num(v: f64) -> String {
    if v.fract() != 0.0 {
        return format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string();
    }
    let digits = format!("{}", v.abs() as u64);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_data_is_text() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(999.0), "999");
        assert_eq!(fmt_num(1000.0), "1,000");
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(0.125), "0.125");
        assert_eq!(fmt_num(2.5), "2.5");
    }
}
