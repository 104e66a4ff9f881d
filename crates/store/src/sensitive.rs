//! Which observation variables hold personal data (names, dates of birth, addresses,
//! free-text notes). Their values never enter the full-text index; the query engine
//! hides them, or replaces them by a keyed hash, from readers without the sensitive
//! scope.

use std::collections::BTreeMap;

/// A data steward's starting list: variables that name, date or locate a person, or
/// hold free text about them. Patterns are matched on the whole variable name, without
/// case; `*` stands for any run of characters.
pub const DEFAULT_SENSITIVE: &[&str] = &[
    "name",
    "full_name",
    "first_name*",
    "last_name*",
    "middle_name*",
    "maiden_name",
    "surname*",
    "patient_name",
    "participant_name",
    "dob",
    "date_of_birth",
    "birth_date",
    "birth_year",
    "year_of_birth",
    "yob",
    "*address*",
    "postcode",
    "zip*",
    "phone*",
    "email*",
    "*notes*",
    "comments",
];

/// The sensitive variables of every source, and which stay joinable as hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Sensitive {
    /// Patterns that apply to every source.
    pub all: Vec<String>,
    /// Patterns of one source, by source name, on top of `all`.
    pub by_source: BTreeMap<String, Vec<String>>,
    /// Patterns of sensitive variables that readers without the sensitive scope still
    /// see, as a keyed hash (so they can join on them), instead of not at all.
    pub hashed: Vec<String>,
}

impl Sensitive {
    /// Nothing is sensitive.
    pub fn none() -> Sensitive {
        Sensitive::default()
    }

    /// [`DEFAULT_SENSITIVE`] for every source, nothing hashed: what applies when the
    /// configuration names no list.
    pub fn starting() -> Sensitive {
        Sensitive {
            all: DEFAULT_SENSITIVE.iter().map(|s| (*s).to_owned()).collect(),
            ..Sensitive::default()
        }
    }

    /// Whether nothing is declared sensitive.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.by_source.values().all(Vec::is_empty)
    }

    /// Whether `variable` of `source` is sensitive.
    pub fn is_sensitive(&self, source: &str, variable: &str) -> bool {
        self.all.iter().any(|p| glob_match(p, variable))
            || self
                .by_source
                .get(source)
                .is_some_and(|ps| ps.iter().any(|p| glob_match(p, variable)))
    }

    /// Whether a sensitive `variable` is shown hashed rather than hidden.
    pub fn is_hashed(&self, variable: &str) -> bool {
        self.hashed.iter().any(|p| glob_match(p, variable))
    }

    /// Whether a column named `name` that gathers every source's values (the
    /// demographics of `subject_links`) is sensitive: everyone's patterns decide.
    pub fn is_sensitive_column(&self, name: &str) -> bool {
        self.all.iter().any(|p| glob_match(p, name))
    }

    /// A fingerprint of what is kept out of the index, stored with each record's
    /// content hash so a change of the list re-indexes what it concerns.
    pub(crate) fn fingerprint(&self) -> u64 {
        // Zero for an empty list: stores indexed before lists existed stay unchanged.
        if self.is_empty() {
            return 0;
        }
        let mut s = String::new();
        for p in &self.all {
            s.push_str(p);
            s.push('\0');
        }
        for (source, ps) in &self.by_source {
            s.push_str(source);
            s.push('\u{1}');
            for p in ps {
                s.push_str(p);
                s.push('\0');
            }
        }
        xxhash_rust::xxh3::xxh3_64(s.as_bytes())
    }
}

/// Whether `name` matches `pattern` as a whole, without case; `*` matches any run.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (
        pattern.to_lowercase().chars().collect(),
        name.to_lowercase().chars().collect(),
    );
    // Classic two-pointer wildcard matching with one backtrack point.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_without_case() {
        assert!(glob_match("birth_year", "BIRTH_YEAR"));
        assert!(glob_match("*notes*", "clinician_notes"));
        assert!(glob_match("*_name", "last_name"));
        assert!(!glob_match("*_name", "name"));
        // Medication names are not people's.
        assert!(!DEFAULT_SENSITIVE.iter().any(|p| glob_match(p, "med_name")));
        assert!(!glob_match("dob", "dob_estimated"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        let s = Sensitive {
            all: vec!["birth_year".into(), "*notes*".into()],
            ..Sensitive::default()
        };
        assert!(s.is_sensitive_column("Clinician_Notes"));
        assert!(s.is_sensitive_column("birth_year"));
        // `_` and `.` are literal, not wildcards.
        assert!(!s.is_sensitive_column("birthXyear"));
        assert!(!glob_match("a.c", "abc"));
    }

    #[test]
    fn per_source_patterns_add_to_everyone_s() {
        let s = Sensitive {
            all: vec!["dob".into()],
            by_source: [("clinic".to_owned(), vec!["mrn".to_owned()])].into(),
            hashed: vec!["mrn".into()],
        };
        assert!(s.is_sensitive("clinic", "MRN"));
        assert!(!s.is_sensitive("imaging", "mrn"));
        assert!(s.is_sensitive("imaging", "dob"));
        assert!(s.is_hashed("mrn") && !s.is_hashed("dob"));
    }
}
