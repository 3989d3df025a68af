//! Aligned text output: column tables and `key: value` blocks, the only two shapes the CLI prints.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Which side of its column a cell sticks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    /// Text.
    Left,
    /// Numbers, so that digits line up.
    Right,
}

/// A column heading and its alignment.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    name: Cow<'static, str>,
    align: Align,
}

/// A left-aligned (text) column.
pub(crate) fn left(name: impl Into<Cow<'static, str>>) -> Column {
    Column {
        name: name.into(),
        align: Align::Left,
    }
}

/// A right-aligned (number) column.
pub(crate) fn right(name: impl Into<Cow<'static, str>>) -> Column {
    Column {
        name: name.into(),
        align: Align::Right,
    }
}

/// Space between columns.
const GAP: &str = "  ";

/// A table: a heading line, then one line per row, columns as wide as their widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns and no rows.
    pub(crate) fn new(columns: &[Column]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty and extra cells are dropped.
    pub(crate) fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.columns.len())
            .map(|c| clean(c.as_ref()))
            .collect();
        row.resize(self.columns.len(), String::new());
        self.rows.push(row);
    }

    /// The table as text, each line ending in a newline, without trailing spaces.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| c.name.chars().count())
            .collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        self.line(
            &mut out,
            &widths,
            self.columns.iter().map(|c| c.name.as_ref()),
        );
        for row in &self.rows {
            self.line(&mut out, &widths, row.iter().map(String::as_str));
        }
        out
    }

    /// Appends one padded line of cells.
    fn line<'a>(&self, out: &mut String, widths: &[usize], cells: impl Iterator<Item = &'a str>) {
        let mut text = String::new();
        for (i, ((cell, col), width)) in cells.zip(&self.columns).zip(widths).enumerate() {
            if i > 0 {
                text.push_str(GAP);
            }
            // Writing to a String cannot fail.
            let _ = match col.align {
                Align::Left => write!(text, "{cell:<width$}"),
                Align::Right => write!(text, "{cell:>width$}"),
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
}

/// `key: value` lines with the values lined up, in the order given.
pub(crate) fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let key = format!("{key}:");
        let line = format!("{key:<width$} {}", clean(value));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Escapes control characters so that a daemon-supplied string cannot break the layout.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_to_the_widest_cell_and_right_aligns_numbers() {
        let mut t = Table::new(&[left("NAME"), right("ID"), left("STATE")]);
        t.row(["blue", "1", "up"]);
        t.row(["a-longer-name", "123", "down: gone"]);
        assert_eq!(
            t.render(),
            "NAME            ID  STATE\n\
             blue             1  up\n\
             a-longer-name  123  down: gone\n"
        );
    }

    #[test]
    fn empty_table_prints_only_the_heading() {
        let t = Table::new(&[left("NAME"), right("ID")]);
        assert_eq!(t.render(), "NAME  ID\n");
    }

    #[test]
    fn short_rows_are_padded_and_last_column_has_no_trailing_space() {
        let mut t = Table::new(&[left("A"), left("B")]);
        t.row(["x"]);
        t.row(["yyy", "z"]);
        assert_eq!(t.render(), "A    B\nx\nyyy  z\n");
    }

    #[test]
    fn control_characters_cannot_break_a_line() {
        let mut t = Table::new(&[left("STATE")]);
        t.row(["down:\nbad"]);
        assert_eq!(t.render(), "STATE\ndown:\\nbad\n");
        assert_eq!(key_values(&[("state", "a\rb".into())]), "state: a\\rb\n");
    }

    #[test]
    fn key_values_line_up() {
        let text = key_values(&[("name", "blue".into()), ("mac limit", "10".into())]);
        assert_eq!(text, "name:      blue\nmac limit: 10\n");
    }
}
