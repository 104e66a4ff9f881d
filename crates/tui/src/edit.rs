//! Text fields: a one-line input (query bar, prompts) and the SQL editor.
//!
//! Cursors count characters, not bytes, so accented text edits as it reads.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// SQL keywords and functions offered by completion and highlighted by the editor.
pub const SQL_WORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "OUTER",
    "FULL",
    "ON",
    "USING",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "UNION",
    "ALL",
    "WITH",
    "ASC",
    "DESC",
    "EXISTS",
    "CAST",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "coalesce",
    "lower",
    "upper",
    "concat",
    "date_trunc",
    "to_timestamp",
    "search",
    "subject_of",
    "array_agg",
    "string_agg",
    "length",
    "round",
    "abs",
    "now",
];

/// Byte offset of character `i` of `s`.
fn byte_at(s: &str, i: usize) -> usize {
    s.char_indices().nth(i).map_or(s.len(), |(b, _)| b)
}

/// A one-line text field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineInput {
    text: String,
    /// In characters.
    cursor: usize,
}

impl LineInput {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn set(&mut self, text: &str) {
        self.text = text.to_owned();
        self.cursor = text.chars().count();
    }

    /// Applies an editing key; whether the text changed.
    pub fn on_key(&mut self, k: KeyEvent) -> bool {
        let n = self.text.chars().count();
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if k.modifiers.contains(KeyModifiers::ALT) {
            // Alt-keys (and Esc typed quickly before a key) are no text.
            return false;
        }
        match k.code {
            KeyCode::Char('u') if ctrl => {
                self.set("");
                return true;
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = n,
            KeyCode::Char('w') if ctrl => {
                let before: String = self.text.chars().take(self.cursor).collect();
                let trimmed = before.trim_end();
                let start = trimmed.rfind(' ').map_or(0, |i| i + 1);
                let start_chars = trimmed[..start].chars().count();
                let b0 = byte_at(&self.text, start_chars);
                let b1 = byte_at(&self.text, self.cursor);
                self.text.replace_range(b0..b1, "");
                self.cursor = start_chars;
                return true;
            }
            KeyCode::Char(c) if !ctrl => {
                let b = byte_at(&self.text, self.cursor);
                self.text.insert(b, c);
                self.cursor += 1;
                return true;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                let b = byte_at(&self.text, self.cursor);
                self.text.remove(b);
                return true;
            }
            KeyCode::Delete if self.cursor < n => {
                let b = byte_at(&self.text, self.cursor);
                self.text.remove(b);
                return true;
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(n),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = n,
            _ => {}
        }
        false
    }
}

/// A multi-line editor: lines and a cursor (row, column in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editor {
    lines: Vec<String>,
    row: usize,
    col: usize,
    /// Where a selection (Shift and a move) started; the cursor is its other end.
    anchor: Option<(usize, usize)>,
}

impl Editor {
    pub fn new(text: &str) -> Editor {
        let mut e = Editor {
            lines: vec![String::new()],
            row: 0,
            col: 0,
            anchor: None,
        };
        e.set(text);
        e
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    pub fn cursor(&self) -> (usize, usize) {
        (self.row, self.col)
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Replaces the text; the cursor goes to its end.
    pub fn set(&mut self, text: &str) {
        self.anchor = None;
        self.lines = text.split('\n').map(str::to_owned).collect();
        self.row = self.lines.len() - 1;
        self.col = self.lines[self.row].chars().count();
    }

    fn line_len(&self, row: usize) -> usize {
        self.lines[row].chars().count()
    }

    /// The selection's ends, in order: `((row, col), (row, col))`, end excluded.
    pub fn selection_range(&self) -> Option<((usize, usize), (usize, usize))> {
        let a = self.anchor?;
        let c = (self.row, self.col);
        (a != c).then(|| if a < c { (a, c) } else { (c, a) })
    }

    /// The selected text, if any.
    pub fn selection(&self) -> Option<String> {
        let ((r0, c0), (r1, c1)) = self.selection_range()?;
        let mut out = String::new();
        for r in r0..=r1 {
            let line = &self.lines[r];
            let from = if r == r0 { byte_at(line, c0) } else { 0 };
            let to = if r == r1 {
                byte_at(line, c1)
            } else {
                line.len()
            };
            out.push_str(&line[from..to]);
            if r < r1 {
                out.push('\n');
            }
        }
        Some(out)
    }

    pub fn on_key(&mut self, k: KeyEvent) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if k.modifiers.contains(KeyModifiers::ALT) {
            return;
        }
        let moves = matches!(
            k.code,
            KeyCode::Left
                | KeyCode::Right
                | KeyCode::Up
                | KeyCode::Down
                | KeyCode::Home
                | KeyCode::End
        );
        // Shift and a move selects; any other key ends the selection (and acts).
        if moves && k.modifiers.contains(KeyModifiers::SHIFT) {
            self.anchor.get_or_insert((self.row, self.col));
        } else {
            self.anchor = None;
        }
        match k.code {
            KeyCode::Char('u') if ctrl => self.set(""),
            KeyCode::Char(c) if !ctrl => {
                let b = byte_at(&self.lines[self.row], self.col);
                self.lines[self.row].insert(b, c);
                self.col += 1;
            }
            KeyCode::Enter => {
                let b = byte_at(&self.lines[self.row], self.col);
                let rest = self.lines[self.row].split_off(b);
                self.lines.insert(self.row + 1, rest);
                self.row += 1;
                self.col = 0;
            }
            KeyCode::Backspace => {
                if self.col > 0 {
                    self.col -= 1;
                    let b = byte_at(&self.lines[self.row], self.col);
                    self.lines[self.row].remove(b);
                } else if self.row > 0 {
                    let line = self.lines.remove(self.row);
                    self.row -= 1;
                    self.col = self.line_len(self.row);
                    self.lines[self.row].push_str(&line);
                }
            }
            KeyCode::Delete => {
                if self.col < self.line_len(self.row) {
                    let b = byte_at(&self.lines[self.row], self.col);
                    self.lines[self.row].remove(b);
                } else if self.row + 1 < self.lines.len() {
                    let next = self.lines.remove(self.row + 1);
                    self.lines[self.row].push_str(&next);
                }
            }
            KeyCode::Left => {
                if self.col > 0 {
                    self.col -= 1;
                } else if self.row > 0 {
                    self.row -= 1;
                    self.col = self.line_len(self.row);
                }
            }
            KeyCode::Right => {
                if self.col < self.line_len(self.row) {
                    self.col += 1;
                } else if self.row + 1 < self.lines.len() {
                    self.row += 1;
                    self.col = 0;
                }
            }
            KeyCode::Up if self.row > 0 => {
                self.row -= 1;
                self.col = self.col.min(self.line_len(self.row));
            }
            KeyCode::Down if self.row + 1 < self.lines.len() => {
                self.row += 1;
                self.col = self.col.min(self.line_len(self.row));
            }
            KeyCode::Home => self.col = 0,
            KeyCode::End => self.col = self.line_len(self.row),
            _ => {}
        }
    }

    /// The statement the cursor is in: text between the `;` before and after it.
    pub fn statement_at_cursor(&self) -> String {
        let text = self.text();
        let offset: usize = self.lines[..self.row]
            .iter()
            .map(|l| l.len() + 1)
            .sum::<usize>()
            + byte_at(&self.lines[self.row], self.col);
        let start = text[..offset].rfind(';').map_or(0, |i| i + 1);
        let end = text[offset..].find(';').map_or(text.len(), |i| offset + i);
        let statement = text[start..end].trim();
        if statement.is_empty() && start > 0 {
            // The cursor right after a `;`: the statement it ends.
            let before = text[..start - 1].rfind(';').map_or(0, |i| i + 1);
            return text[before..start - 1].trim().to_owned();
        }
        statement.to_owned()
    }

    /// The identifier characters just before the cursor.
    pub fn word_before_cursor(&self) -> String {
        let before: Vec<char> = self.lines[self.row].chars().take(self.col).collect();
        let start = before
            .iter()
            .rposition(|c| !(c.is_alphanumeric() || *c == '_'))
            .map_or(0, |i| i + 1);
        before[start..].iter().collect()
    }

    /// Puts `word` in place of the identifier before the cursor.
    pub fn replace_word_before_cursor(&mut self, word: &str) {
        let n = self.word_before_cursor().chars().count();
        let start = self.col - n;
        let line = &mut self.lines[self.row];
        let (b0, b1) = (byte_at(line, start), byte_at(line, self.col));
        line.replace_range(b0..b1, word);
        self.col = start + word.chars().count();
    }
}
