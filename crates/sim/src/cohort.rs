//! The synthetic cohort: people, and how each system spells them.
//!
//! Each person is drawn from a stream of their own (`person-<n>`), so person 42 is the
//! same whatever the cohort size: a cohort of 200 extends one of 100.

use std::fmt;

use chrono::{Days, NaiveDate};

use crate::rng::Rng;

/// The five simulated systems, in port order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum System {
    Xnat,
    Redcap,
    Omero,
    Transmart,
    Elabftw,
}

impl System {
    pub const ALL: [System; 5] = [
        System::Xnat,
        System::Redcap,
        System::Omero,
        System::Transmart,
        System::Elabftw,
    ];

    /// The lowercase name used in configs, truth files and `records.system`.
    pub fn name(self) -> &'static str {
        match self {
            System::Xnat => "xnat",
            System::Redcap => "redcap",
            System::Omero => "omero",
            System::Transmart => "transmart",
            System::Elabftw => "elabftw",
        }
    }

    /// The product's own spelling, for messages.
    pub fn display(self) -> &'static str {
        match self {
            System::Xnat => "XNAT",
            System::Redcap => "REDCap",
            System::Omero => "OMERO",
            System::Transmart => "tranSMART",
            System::Elabftw => "eLabFTW",
        }
    }

    pub fn from_name(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|sys| sys.name() == s)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
}

impl Sex {
    pub fn other(self) -> Sex {
        match self {
            Sex::Female => Sex::Male,
            Sex::Male => Sex::Female,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnosis {
    CognitivelyNormal,
    Mci,
    Alzheimer,
}

impl Diagnosis {
    pub fn label(self) -> &'static str {
        match self {
            Diagnosis::CognitivelyNormal => "Cognitively normal",
            Diagnosis::Mci => "Mild cognitive impairment",
            Diagnosis::Alzheimer => "Alzheimer's disease",
        }
    }
}

/// One true person of the cohort.
#[derive(Debug, Clone)]
pub struct Person {
    /// 1-based number; the canonical subject code is `INT_<n:04>`.
    pub n: u32,
    pub sex: Sex,
    pub birth_year: i32,
    pub diagnosis: Diagnosis,
    pub enrolled: NaiveDate,
    /// Presence per system, indexed by `System::index`.
    pub present: [bool; 5],
    /// The one system (if any) where this person's key was typed wrong.
    pub typo: Option<System>,
    /// tranSMART holds the other sex for this person.
    pub conflicting_sex: bool,
    /// XNAT holds a year of birth one year off for this person.
    pub conflicting_birth_year: bool,
    /// REDCap record id entered zero-padded (`0042` rather than `42`).
    pub redcap_padded: bool,
}

/// Probability of being present in each system, in `System::ALL` order.
const PRESENCE: [f64; 5] = [0.85, 0.95, 0.35, 0.6, 0.3];

impl Person {
    /// Draws person `n` from its own stream of `seed`.
    pub fn generate(seed: u64, n: u32) -> Person {
        let mut r = Rng::new(seed, &format!("person-{n}"));
        let sex = if r.chance(0.56) {
            Sex::Female
        } else {
            Sex::Male
        };
        let birth_year = r.range(1936, 1968) as i32;
        let diagnosis = match r.below(10) {
            0..=3 => Diagnosis::CognitivelyNormal,
            4..=7 => Diagnosis::Mci,
            _ => Diagnosis::Alzheimer,
        };
        let base = NaiveDate::from_ymd_opt(2019, 1, 7).expect("valid date");
        let enrolled = base + Days::new(r.range(0, 5 * 365) as u64);
        let mut present = [false; 5];
        for (i, p) in PRESENCE.iter().enumerate() {
            present[i] = r.chance(*p);
        }
        if !present.iter().any(|&p| p) {
            present[System::Redcap.index()] = true;
        }
        let typo = if r.chance(0.04) {
            let candidates: Vec<System> = [
                System::Xnat,
                System::Omero,
                System::Transmart,
                System::Elabftw,
            ]
            .into_iter()
            .filter(|s| present[s.index()])
            .collect();
            (!candidates.is_empty()).then(|| *r.pick(&candidates))
        } else {
            None
        };
        Person {
            n,
            sex,
            birth_year,
            diagnosis,
            enrolled,
            present,
            typo,
            conflicting_sex: r.chance(0.03),
            conflicting_birth_year: r.chance(0.03),
            redcap_padded: r.chance(0.15),
        }
    }

    pub fn in_system(&self, s: System) -> bool {
        self.present[s.index()]
    }

    /// The id of the true person in ground-truth files.
    pub fn person_id(&self) -> String {
        format!("P{:04}", self.n)
    }

    /// The institute's canonical code, `INT_0042`.
    pub fn canonical(&self) -> String {
        format!("INT_{:04}", self.n)
    }

    fn typo_in(&self, s: System) -> bool {
        self.typo == Some(s)
    }

    /// XNAT subject label: `INT_0042`; mistyped `INT_O042` (letter O).
    pub fn xnat_label(&self) -> String {
        let c = self.canonical();
        if self.typo_in(System::Xnat) {
            mistype_zero(&c)
        } else {
            c
        }
    }

    /// REDCap record id: `42`, or `0042` where it was entered padded.
    pub fn redcap_record(&self) -> String {
        if self.redcap_padded {
            format!("{:04}", self.n)
        } else {
            self.n.to_string()
        }
    }

    /// tranSMART `SUBJ_ID`: `INT-042`; mistyped `INT_042`.
    pub fn transmart_subject(&self) -> String {
        let sep = if self.typo_in(System::Transmart) {
            '_'
        } else {
            '-'
        };
        format!("INT{sep}{:03}", self.n)
    }

    /// OMERO map-annotation `Subject` value: `INT_0042`; mistyped lowercase `int_0042`.
    pub fn omero_subject(&self) -> String {
        let c = self.canonical();
        if self.typo_in(System::Omero) {
            c.to_lowercase()
        } else {
            c
        }
    }

    /// eLabFTW subject code in item titles and fields: `INT_0042`; mistyped `INT0042`.
    pub fn elab_subject(&self) -> String {
        if self.typo_in(System::Elabftw) {
            format!("INT{:04}", self.n)
        } else {
            self.canonical()
        }
    }
}

/// `INT_0042` → `INT_O042`; codes without a zero after the prefix are lowercased instead.
fn mistype_zero(code: &str) -> String {
    match code[4..].find('0') {
        Some(i) => {
            let mut s = code.to_owned();
            s.replace_range(4 + i..5 + i, "O");
            s
        }
        None => code.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_differ_per_system_and_typos_stay_distinct() {
        let mut p = Person::generate(1, 42);
        p.typo = None;
        p.redcap_padded = false;
        assert_eq!(p.xnat_label(), "INT_0042");
        assert_eq!(p.redcap_record(), "42");
        assert_eq!(p.transmart_subject(), "INT-042");
        assert_eq!(p.omero_subject(), "INT_0042");
        p.redcap_padded = true;
        assert_eq!(p.redcap_record(), "0042");
        p.typo = Some(System::Xnat);
        assert_eq!(p.xnat_label(), "INT_O042");
        p.typo = Some(System::Transmart);
        assert_eq!(p.transmart_subject(), "INT_042");
        assert_eq!(mistype_zero("INT_1234"), "int_1234");
    }

    #[test]
    fn a_person_does_not_depend_on_the_cohort_size() {
        let a = Person::generate(9, 77);
        let b = Person::generate(9, 77);
        assert_eq!(a.birth_year, b.birth_year);
        assert_eq!(a.present, b.present);
        assert!(a.present.iter().any(|&p| p));
    }
}
