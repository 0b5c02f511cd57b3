//! Printing for people (aligned columns, colour on a terminal) and for
//! scripts (JSON), errors, and progress. Colour is dropped when the output is
//! not a terminal or `NO_COLOR` is set (anstream decides).

use std::io::{BufRead, IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use anyhow::{Context, Result};

pub const HEADER: Style = Style::new().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();
pub const WARN: Style = AnsiColor::Yellow.on_default();
pub const BAD: Style = AnsiColor::Red.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const PLAIN: Style = Style::new();

/// Asks a person on the terminal (the prompt on standard error) and reads
/// their answer, one line, trimmed.
pub fn ask(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    Ok(answer.trim().to_string())
}

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
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    print_table(&rows, header, style, width_limit(), &[]);
}

/// The widest a table may be: the terminal's width when printing to one,
/// else `$COLUMNS` when set, else no limit (a file or a pipe gets it all).
pub fn width_limit() -> Option<usize> {
    if std::io::stdout().is_terminal()
        && let Some((terminal_size::Width(width), _)) = terminal_size::terminal_size()
    {
        return Some(usize::from(width));
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c > 0)
}

/// Rows of any width as aligned columns, the first a bold header when
/// `header`; fitted into `limit` columns by narrowing the widest columns
/// (except those in `keep`) and cutting their cells with an ellipsis.
pub fn print_table(
    rows: &[Vec<String>],
    header: bool,
    style: impl Fn(usize, &str) -> Style,
    limit: Option<usize>,
    keep: &[usize],
) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    if let Some(limit) = limit {
        fit(&mut widths, limit, keep);
    }
    let mut out = anstream::stdout().lock();
    for (index, row) in rows.iter().enumerate() {
        let mut line = String::from("  ");
        for (column, (cell, &width)) in row.iter().zip(&widths).enumerate() {
            let cell_style = if header && index == 0 {
                HEADER
            } else {
                style(column, cell)
            };
            let shown = cut(cell, width);
            let padding = if column + 1 == columns {
                0
            } else {
                width - shown.chars().count() + 2
            };
            line.push_str(&format!(
                "{cell_style}{shown}{cell_style:#}{}",
                " ".repeat(padding)
            ));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// Narrows the widest columns, one character at a time, until the table
/// (2 spaces of indent, 2 between columns) fits in `limit`; no column gets
/// narrower than 8, and the columns in `keep` (ids, times) are never cut.
fn fit(widths: &mut [usize], limit: usize, keep: &[usize]) {
    const NARROWEST: usize = 8;
    let total = |w: &[usize]| 2 + w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    while total(widths) > limit {
        let Some((widest, width)) = widths
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| !keep.contains(i))
            .max_by_key(|&(i, w)| (w, usize::MAX - i))
        else {
            return;
        };
        if width <= NARROWEST {
            return;
        }
        widths[widest] -= 1;
    }
}

/// `text` in at most `width` characters: cut with an ellipsis when longer.
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
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
        // tokio-postgres wraps a server's error as "db error" whose cause
        // is "ERROR: <message>": both only repeat a message said above.
        let text = cause.to_string();
        let said = text == "db error" || message.contains(text.strip_prefix("ERROR: ").unwrap_or(&text));
        if !said {
            message.push_str(&format!("\n  caused by: {text}"));
        }
    }
    if let Some(help) = help_for(error) {
        message.push_str(&format!("\n  help: {help}"));
    }
    let _ = writeln!(anstream::stderr().lock(), "{message}");
}

/// What to do about an error the server raised, where its message alone
/// does not say: text that is not UTF-8 read from a database in
/// `SQL_ASCII` (PostgreSQL's `invalid byte sequence for encoding "UTF8"`,
/// SQLSTATE 22021), whatever command met it.
fn help_for(error: &anyhow::Error) -> Option<&'static str> {
    let invalid_utf8 = error.chain().any(|cause| {
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            .is_some_and(|code| *code == tokio_postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE)
            || cause.to_string().contains("(SQLSTATE 22021)")
    });
    invalid_utf8.then_some(
        "the database holds text that is not UTF-8 (its encoding is SQL_ASCII: `SHOW server_encoding`), and pgtrail \
         reads its trail as UTF-8; convert the database to UTF-8 (dump it, create it again with `createdb -E UTF8`, \
         restore)",
    )
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
