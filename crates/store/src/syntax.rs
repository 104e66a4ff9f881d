//! The search syntax, parsed into a small tree before any index is touched, so that
//! every error can say what is wrong and where.
//!
//! ```text
//! query   := or
//! or      := and ("OR" and)*
//! and     := unary (["AND"] unary)*
//! unary   := ("-" | "NOT" | "+") atom | atom
//! atom    := "(" or ")" | FIELD ":" (value | "(" or ")") | value
//! value   := "phrase" | word | word*
//! ```
//!
//! `*` alone matches every record. This module knows nothing of tantivy; `index.rs`
//! turns the tree into a query.

use std::fmt;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Every record.
    All,
    /// A word, a prefix (`amyl*`) or a phrase, in a field (`None`: the default text).
    Term {
        field: Option<String>,
        text: String,
        kind: TermKind,
    },
    /// All of these, none of those.
    And {
        must: Vec<Node>,
        must_not: Vec<Node>,
    },
    /// Any of these.
    Or(Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TermKind {
    /// A word: matched exactly, and with typos where it is long enough.
    Word,
    /// `word*`: every word starting with it.
    Prefix,
    /// `"a phrase"`: these words in this order, no typos.
    Phrase,
}

/// What is wrong with a query, and the character (counted from 1) where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong.
    pub reason: String,
    /// 1-based character position in the query.
    pub position: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at character {}", self.reason, self.position)
    }
}

/// Fields a query may name, and whether they hold free text.
pub(crate) const FIELDS: &[(&str, bool)] = &[
    ("source", false),
    ("system", false),
    ("kind", false),
    ("project", false),
    ("subject_id", false),
    ("subject_key", false),
    ("title", true),
    ("body", true),
];

fn field_list() -> String {
    FIELDS
        .iter()
        .map(|(f, _)| *f)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Minus,
    Plus,
    Or,
    And,
    Not,
    /// `word`, `field:`-less; `star` when it ends with `*`.
    Word {
        text: String,
        star: bool,
    },
    Phrase(String),
    /// `field:` immediately followed by its value.
    Field(String),
}

/// Splits a query into tokens with their 1-based character positions.
fn lex(query: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // A field's value may hold colons (`subject_id:subj:INT_0042`).
    let mut in_value = false;
    let special = |c: char| c.is_whitespace() || matches!(c, '(' | ')' | '"');
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let value = std::mem::take(&mut in_value);
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((Tok::Open, at));
                i += 1;
            }
            ')' => {
                out.push((Tok::Close, at));
                i += 1;
            }
            '"' => {
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|&c| c == '"') else {
                    return Err(SyntaxError {
                        reason: "unclosed quote: add a closing `\"`".into(),
                        position: at,
                    });
                };
                out.push((Tok::Phrase(chars[start..start + len].iter().collect()), at));
                i = start + len + 1;
            }
            '-' | '+'
                if chars.get(i + 1).is_some_and(|&n| !special(n))
                    || chars.get(i + 1) == Some(&'"')
                    || chars.get(i + 1) == Some(&'(') =>
            {
                out.push((if c == '-' { Tok::Minus } else { Tok::Plus }, at));
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !special(chars[i]) {
                    // `field:` ends a token of its own.
                    if chars[i] == ':' && i > start && !value {
                        break;
                    }
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if i < chars.len() && chars[i] == ':' {
                    let name = word;
                    if !FIELDS.iter().any(|(f, _)| *f == name) {
                        return Err(SyntaxError {
                            reason: format!(
                                "unknown field `{name}` (searchable fields: {})",
                                field_list()
                            ),
                            position: at,
                        });
                    }
                    i += 1;
                    if i >= chars.len() || chars[i].is_whitespace() || chars[i] == ')' {
                        return Err(SyntaxError {
                            reason: format!("`{name}:` needs a value right after the colon"),
                            position: at,
                        });
                    }
                    out.push((Tok::Field(name), at));
                    in_value = true;
                    continue;
                }
                match word.as_str() {
                    "OR" => out.push((Tok::Or, at)),
                    "AND" => out.push((Tok::And, at)),
                    "NOT" => out.push((Tok::Not, at)),
                    _ => {
                        let (text, star) = match word.strip_suffix('*') {
                            Some(stem) => (stem.to_owned(), true),
                            None => (word, false),
                        };
                        if text.contains('*') {
                            return Err(SyntaxError {
                                reason: "`*` may only end a word (`amyl*`) or stand alone".into(),
                                position: at,
                            });
                        }
                        out.push((Tok::Word { text, star }, at));
                    }
                }
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }

    fn position(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(_, p)| *p)
    }

    fn or(&mut self, field: Option<&str>) -> Result<Node, SyntaxError> {
        let mut alternatives = vec![self.and(field)?];
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            if matches!(self.peek(), None | Some(Tok::Close | Tok::Or)) {
                return Err(self.error("`OR` needs something on each side"));
            }
            alternatives.push(self.and(field)?);
        }
        Ok(if alternatives.len() == 1 {
            alternatives.pop().unwrap_or(Node::All)
        } else {
            Node::Or(alternatives)
        })
    }

    fn and(&mut self, field: Option<&str>) -> Result<Node, SyntaxError> {
        let (mut must, mut must_not) = (Vec::new(), Vec::new());
        loop {
            match self.peek() {
                None | Some(Tok::Close | Tok::Or) => break,
                Some(Tok::And) => {
                    if must.is_empty() && must_not.is_empty() {
                        return Err(self.error("`AND` needs something before it"));
                    }
                    self.at += 1;
                    if matches!(self.peek(), None | Some(Tok::Close | Tok::Or | Tok::And)) {
                        return Err(self.error("`AND` needs something after it"));
                    }
                }
                Some(Tok::Minus | Tok::Not) => {
                    self.at += 1;
                    must_not.push(self.atom(field)?);
                }
                Some(Tok::Plus) => {
                    self.at += 1;
                    must.push(self.atom(field)?);
                }
                Some(_) => must.push(self.atom(field)?),
            }
        }
        if must.is_empty() && must_not.is_empty() {
            return Err(match self.peek() {
                Some(Tok::Or) => self.error("`OR` needs something on each side"),
                Some(Tok::Close) => self.error("empty parentheses or a `)` without its `(`"),
                _ => self.error("empty query: type words to find, or `*` for everything"),
            });
        }
        if must.len() == 1 && must_not.is_empty() {
            return Ok(must.pop().unwrap_or(Node::All));
        }
        Ok(Node::And { must, must_not })
    }

    fn atom(&mut self, field: Option<&str>) -> Result<Node, SyntaxError> {
        let Some((tok, at)) = self.toks.get(self.at).cloned() else {
            return Err(self.error("a word is missing at the end of the query"));
        };
        self.at += 1;
        match tok {
            Tok::Open => {
                let inner = self.or(field)?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(SyntaxError {
                        reason: "unclosed parenthesis: add a closing `)`".into(),
                        position: at,
                    });
                }
                self.at += 1;
                Ok(inner)
            }
            Tok::Field(name) => {
                if field.is_some() {
                    return Err(SyntaxError {
                        reason: format!("`{name}:` inside another field's value"),
                        position: at,
                    });
                }
                self.atom(Some(&name))
            }
            Tok::Word { text, star } if text.is_empty() && star => {
                if field.is_some() {
                    return Err(SyntaxError {
                        reason: "a field needs a value, not `*` alone".into(),
                        position: at,
                    });
                }
                Ok(Node::All)
            }
            Tok::Word { text, star } => Ok(Node::Term {
                field: field.map(str::to_owned),
                text,
                kind: if star {
                    TermKind::Prefix
                } else {
                    TermKind::Word
                },
            }),
            Tok::Phrase(text) => Ok(Node::Term {
                field: field.map(str::to_owned),
                text,
                kind: TermKind::Phrase,
            }),
            Tok::Close => Err(SyntaxError {
                reason: "`)` without its `(`".into(),
                position: at,
            }),
            Tok::Or | Tok::And | Tok::Not | Tok::Minus | Tok::Plus => Err(SyntaxError {
                reason: "an operator where a word was expected".into(),
                position: at,
            }),
        }
    }

    fn error(&self, reason: &str) -> SyntaxError {
        SyntaxError {
            reason: reason.to_owned(),
            position: self.position(),
        }
    }
}

/// Parses `query` in the search syntax.
pub(crate) fn parse(query: &str) -> Result<Node, SyntaxError> {
    let toks = lex(query)?;
    let end = query.chars().count() + 1;
    let mut p = Parser { toks, at: 0, end };
    let node = p.or(None)?;
    if let Some((_, at)) = p.toks.get(p.at) {
        return Err(SyntaxError {
            reason: "`)` without its `(`".into(),
            position: *at,
        });
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(t: &str) -> Node {
        Node::Term {
            field: None,
            text: t.into(),
            kind: TermKind::Word,
        }
    }

    fn err(q: &str) -> String {
        parse(q).unwrap_err().to_string()
    }

    #[test]
    fn words_phrases_prefixes_and_fields() {
        assert_eq!(parse("moca").unwrap(), word("moca"));
        assert_eq!(
            parse("csf amyloid").unwrap(),
            Node::And {
                must: vec![word("csf"), word("amyloid")],
                must_not: vec![]
            }
        );
        assert_eq!(
            parse("amyl*").unwrap(),
            Node::Term {
                field: None,
                text: "amyl".into(),
                kind: TermKind::Prefix
            }
        );
        assert_eq!(
            parse("source:clinic \"mild cognitive\"").unwrap(),
            Node::And {
                must: vec![
                    Node::Term {
                        field: Some("source".into()),
                        text: "clinic".into(),
                        kind: TermKind::Word
                    },
                    Node::Term {
                        field: None,
                        text: "mild cognitive".into(),
                        kind: TermKind::Phrase
                    },
                ],
                must_not: vec![]
            }
        );
        assert_eq!(parse("*").unwrap(), Node::All);
        assert_eq!(
            parse("subject_id:subj:INT_0042").unwrap(),
            Node::Term {
                field: Some("subject_id".into()),
                text: "subj:INT_0042".into(),
                kind: TermKind::Word
            }
        );
        assert_eq!(
            parse("a OR b -c").unwrap(),
            Node::Or(vec![
                word("a"),
                Node::And {
                    must: vec![word("b")],
                    must_not: vec![word("c")]
                }
            ])
        );
        // A hyphen inside a word is part of it; the analyzer splits it later.
        assert_eq!(parse("INT-042").unwrap(), word("INT-042"));
        assert_eq!(
            parse("-csf").unwrap(),
            Node::And {
                must: vec![],
                must_not: vec![word("csf")]
            }
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            err("amyloid \"csf"),
            "unclosed quote: add a closing `\"` at character 9"
        );
        assert_eq!(
            err("(csf OR plasma"),
            "unclosed parenthesis: add a closing `)` at character 1"
        );
        assert_eq!(err("csf)"), "`)` without its `(` at character 4");
        assert!(err("colour:red").starts_with("unknown field `colour`"));
        assert_eq!(
            err("csf OR"),
            "`OR` needs something on each side at character 7"
        );
        assert_eq!(
            err("OR csf"),
            "`OR` needs something on each side at character 1"
        );
        assert_eq!(
            err(""),
            "empty query: type words to find, or `*` for everything at character 1"
        );
        assert_eq!(
            err("kind: x"),
            "`kind:` needs a value right after the colon at character 1"
        );
        assert_eq!(
            err("a*b"),
            "`*` may only end a word (`amyl*`) or stand alone at character 1"
        );
    }
}
