//! Printing for people (aligned columns) and for scripts (JSON), and errors.

use std::io::Write;

use anyhow::Result;

/// Prints rows as aligned columns.
pub fn print_rows<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for row in rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        let _ = writeln!(out, "  {}", line.trim_end());
    }
}

pub fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// `error: ...` with the causes, one per line.
pub fn print_error(error: &anyhow::Error) {
    let mut message = format!("error: {error}");
    for cause in error.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {cause}"));
    }
    eprintln!("{message}");
}
