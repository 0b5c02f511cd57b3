//! Printing for people (aligned columns, colour on a terminal) and for
//! scripts (JSON), errors, and progress. Colour is dropped when the output is
//! not a terminal or `NO_COLOR` is set (anstream decides).

use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use anyhow::Result;

pub const HEADER: Style = Style::new().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();
pub const WARN: Style = AnsiColor::Yellow.on_default();
pub const BAD: Style = AnsiColor::Red.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const PLAIN: Style = Style::new();

/// Prints rows as aligned columns; `style(column, cell)` colours a cell.
pub fn print_rows<const N: usize>(rows: &[[String; N]]) {
    print_styled(rows, false, |_, _| PLAIN);
}

/// Like [`print_rows`], with the first row as a bold header and cell colours.
pub fn print_styled<const N: usize>(
    rows: &[[String; N]],
    header: bool,
    style: impl Fn(usize, &str) -> Style,
) {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = anstream::stdout().lock();
    for (index, row) in rows.iter().enumerate() {
        let mut line = String::from("  ");
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            let cell_style = if header && index == 0 {
                HEADER
            } else {
                style(column, cell)
            };
            let padding = if column + 1 == N {
                0
            } else {
                width - cell.chars().count() + 2
            };
            line.push_str(&format!(
                "{cell_style}{cell}{cell_style:#}{}",
                " ".repeat(padding)
            ));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// One line on standard output in a style.
pub fn say(style: Style, text: &str) {
    let _ = writeln!(anstream::stdout().lock(), "{style}{text}{style:#}");
}

pub fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// `error: ...` with the causes, one per line, on standard error.
pub fn print_error(error: &anyhow::Error) {
    let mut message = format!("{}error:{:#} {error}", BAD.bold(), BAD.bold());
    for cause in error.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {cause}"));
    }
    let _ = writeln!(anstream::stderr().lock(), "{message}");
}

/// Progress of a long step, on standard error, only on a terminal: one line
/// rewritten in place, cleared by [`progress_done`].
pub fn progress(done: usize, total: usize, what: &str) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K[{}/{total}] {what}", done + 1);
        let _ = err.flush();
    }
}

pub fn progress_done() {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

/// A step of a long task, on standard error (always: it says what happens).
pub fn step(text: &str) {
    let _ = writeln!(anstream::stderr().lock(), "{DIM}{text}{DIM:#}");
}
