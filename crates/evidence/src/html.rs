//! A report as one self-contained HTML file (inline style, no script, no
//! external asset), readable in any browser without a server. Every table
//! row carries `data-section` and `data-id` so that a reader (or a test)
//! can find an item.

use crate::render::{heading, sections};
use crate::report::Report;

/// HTML-escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.4em 0}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f2f2f2}td{white-space:pre-wrap}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}\
.empty{color:#777;font-style:italic}";

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(&format!(
        "<title>pgtrail: {} ({})</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(report.kind.title()),
        escape(&report.database)
    ));
    out.push_str(&format!("<h1>{}</h1>\n<dl>\n", escape(report.kind.title())));
    for (key, value) in heading(report) {
        out.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(key), escape(&value)));
    }
    out.push_str("</dl>\n");
    for (index, section) in sections(report).iter().enumerate() {
        out.push_str(&format!(
            "<section id=\"section-{index}\">\n<h2>{}</h2>\n",
            escape(&section.title)
        ));
        if section.rows.is_empty() {
            out.push_str(&format!(
                "<p class=\"empty\">{}</p>\n</section>\n",
                escape(section.empty)
            ));
            continue;
        }
        out.push_str("<table>\n<thead><tr>");
        for column in &section.columns {
            out.push_str(&format!("<th>{}</th>", escape(column)));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in &section.rows {
            let id = row.first().map(String::as_str).unwrap_or_default();
            out.push_str(&format!(
                "<tr data-section=\"{}\" data-id=\"{}\">",
                escape(&section.title),
                escape(id)
            ));
            for cell in row {
                out.push_str(&format!("<td>{}</td>", escape(cell)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_text() {
        assert_eq!(
            escape("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}
