//! The simulated world: what each of the five systems holds, generated from the cohort,
//! and how it changes from one simulated day to the next.
//!
//! Every entity remembers the person it belongs to, so the ground truth is read off the
//! data actually served rather than kept beside it.

use std::collections::BTreeSet;

use chrono::{Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use serde_json::{Value, json};

use crate::cohort::{Diagnosis, Person, Sex, System};
use crate::rng::Rng;

/// Day 0 of the simulated clock.
pub fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2025, 3, 3)
        .expect("valid date")
        .and_hms_opt(8, 0, 0)
        .expect("valid time")
}

pub struct World {
    pub seed: u64,
    pub subjects: u32,
    pub day: u32,
    pub persons: Vec<Person>,
    pub xnat: Xnat,
    pub redcap: Redcap,
    pub omero: Omero,
    pub transmart: Transmart,
    pub elab: Elab,
}

// ---------------------------------------------------------------- XNAT

pub struct XnatProject {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub pi_firstname: &'static str,
    pub pi_lastname: &'static str,
}

pub struct XnatSubject {
    pub id: String,
    pub label: String,
    pub project: &'static str,
    pub shared_into: Vec<&'static str>,
    pub insert_date: NaiveDateTime,
    pub last_modified: NaiveDateTime,
    pub gender: &'static str,
    pub yob: i32,
    pub handedness: &'static str,
    pub person: u32,
}

pub struct XnatExperiment {
    pub id: String,
    pub label: String,
    pub project: &'static str,
    pub subject_id: String,
    pub xsi_type: &'static str,
    pub modality: &'static str,
    pub date: NaiveDate,
    pub time: NaiveTime,
    pub insert_date: NaiveDateTime,
    pub last_modified: NaiveDateTime,
    pub scanner_model: &'static str,
    pub scanner_manufacturer: &'static str,
    pub scanner_station: &'static str,
    pub field_strength: Option<&'static str>,
    pub operator: String,
    pub uid: String,
    pub weight: f64,
    pub session_type: &'static str,
    pub tracer: Option<&'static str>,
    pub scans: Vec<XnatScan>,
    pub person: u32,
}

pub struct XnatScan {
    pub id: String,
    pub pk: u64,
    pub xsi_type: &'static str,
    pub scan_type: &'static str,
    pub series_description: &'static str,
    pub quality: &'static str,
    pub note: String,
    pub frames: u32,
    pub last_modified: NaiveDateTime,
}

pub struct Xnat {
    pub projects: Vec<XnatProject>,
    pub subjects: Vec<XnatSubject>,
    pub experiments: Vec<XnatExperiment>,
    next_subject: u32,
    next_experiment: u32,
    next_scan_pk: u64,
}

pub const XNAT_MAIN: &str = "MEMCLIN";
pub const XNAT_PET: &str = "PETAMY";

// ---------------------------------------------------------------- REDCap

pub struct RedcapRow {
    pub event: &'static str,
    /// `(instrument, instance)` for rows of a repeating instrument.
    pub repeat: Option<(&'static str, u32)>,
    /// Filled fields only, by field name (checkboxes as `field___code`).
    pub values: Vec<(String, String)>,
}

pub struct RedcapRecord {
    pub id: String,
    pub modified: NaiveDateTime,
    pub rows: Vec<RedcapRow>,
    pub person: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RedcapLogKind {
    Add,
    Edit,
    Delete,
}

pub struct RedcapLog {
    pub timestamp: NaiveDateTime,
    pub username: &'static str,
    pub kind: RedcapLogKind,
    pub record: String,
    pub details: String,
}

pub struct Redcap {
    pub records: Vec<RedcapRecord>,
    pub log: Vec<RedcapLog>,
}

pub const REDCAP_EVENTS: [(&str, &str, u32); 3] = [
    ("Baseline", "baseline_arm_1", 101),
    ("Month 12", "month_12_arm_1", 102),
    ("Month 24", "month_24_arm_1", 103),
];

// ---------------------------------------------------------------- OMERO

pub struct OmeroProject {
    pub id: i64,
    pub name: &'static str,
    pub description: Option<&'static str>,
    pub datasets: Vec<i64>,
}

pub struct OmeroDataset {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub images: Vec<i64>,
}

pub struct OmeroChannel {
    pub id: i64,
    pub name: &'static str,
    pub color: i32,
    pub excitation: Option<f64>,
    pub emission: Option<f64>,
}

pub struct MapAnnotation {
    pub id: i64,
    pub link_id: i64,
    pub values: Vec<(String, String)>,
    pub date: NaiveDateTime,
}

pub struct OmeroImage {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub acquisition_date: Option<i64>,
    pub size: [u32; 5],
    pub physical_size_xy: Option<f64>,
    pub physical_size_z: Option<f64>,
    pub pixel_type: &'static str,
    pub significant_bits: u32,
    pub sha1: String,
    pub channels: Vec<OmeroChannel>,
    pub dataset: i64,
    pub annotation: Option<MapAnnotation>,
    /// Tag annotations: `(annotation id, text)`.
    pub tags: Vec<(i64, &'static str)>,
    pub person: Option<u32>,
}

pub struct Omero {
    pub projects: Vec<OmeroProject>,
    pub datasets: Vec<OmeroDataset>,
    pub images: Vec<OmeroImage>,
    next_image: i64,
    next_annotation: i64,
    next_channel: i64,
}

// ---------------------------------------------------------------- tranSMART

pub struct TmConcept {
    pub code: &'static str,
    pub path: &'static str,
    pub name: &'static str,
    pub numeric: bool,
    pub unit: Option<&'static str>,
}

pub const TM_STUDY: &str = "NEURO_BIOMARKERS";

pub const TM_CONCEPTS: [TmConcept; 7] = [
    TmConcept {
        code: "NB:DEM:AGE",
        path: "\\Public Studies\\NEURO_BIOMARKERS\\Demographics\\Age\\",
        name: "Age",
        numeric: true,
        unit: Some("years"),
    },
    TmConcept {
        code: "NB:DEM:SEX",
        path: "\\Public Studies\\NEURO_BIOMARKERS\\Demographics\\Sex\\",
        name: "Sex",
        numeric: false,
        unit: None,
    },
    TmConcept {
        code: "NB:CLI:DX",
        path: "\\Public Studies\\NEURO_BIOMARKERS\\Clinical\\Diagnosis\\",
        name: "Diagnosis",
        numeric: false,
        unit: None,
    },
    TmConcept {
        code: "NB:GEN:APOE",
        path: "\\Public Studies\\NEURO_BIOMARKERS\\Genetics\\APOE genotype\\",
        name: "APOE genotype",
        numeric: false,
        unit: None,
    },
    TmConcept {
        code: "NB:CSF:AB42",
        path: "\\Public Studies\\NEURO_BIOMARKERS\\CSF\\Abeta42\\",
        name: "Abeta42",
        numeric: true,
        unit: Some("pg/mL"),
    },
    TmConcept {
        code: "NB:CSF:PTAU",
        path: "\\Public Studies\\NEURO_BIOMARKERS\\CSF\\p-tau181\\",
        name: "p-tau181",
        numeric: true,
        unit: Some("pg/mL"),
    },
    TmConcept {
        code: "NB:PLA:NFL",
        path: "\\Public Studies\\NEURO_BIOMARKERS\\Plasma\\NfL\\",
        name: "NfL",
        numeric: true,
        unit: Some("pg/mL"),
    },
];

/// Trial visits: label and months from baseline.
pub const TM_TRIAL_VISITS: [(&str, i64); 2] = [("Baseline", 0), ("Month 12", 12)];

pub struct TmPatient {
    pub id: i64,
    pub subject: String,
    pub in_trial_id: String,
    pub sex: &'static str,
    pub age: i64,
    pub race: Option<&'static str>,
    pub person: u32,
}

pub struct TmVisit {
    pub id: i64,
    pub patient: i64,
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub encounter: String,
}

#[derive(Clone, PartialEq)]
pub enum TmValue {
    Num(f64),
    Str(String),
}

pub struct TmObservation {
    pub concept: usize,
    pub patient: i64,
    pub visit: Option<i64>,
    pub trial_visit: usize,
    pub start_time: Option<NaiveDateTime>,
    pub value: TmValue,
}

pub struct Transmart {
    pub study_db_id: i64,
    pub upload_date: NaiveDate,
    pub patients: Vec<TmPatient>,
    pub visits: Vec<TmVisit>,
    pub observations: Vec<TmObservation>,
    next_patient: i64,
    next_visit: i64,
}

// ---------------------------------------------------------------- eLabFTW

pub struct ExtraField {
    pub ftype: &'static str,
    pub value: Value,
    pub unit: Option<&'static str>,
    pub units: Option<Vec<&'static str>>,
    pub options: Option<Vec<&'static str>>,
    /// Integer in some entries and a string in others, as real exports have it.
    pub group_id: Option<Value>,
    pub position: Option<u32>,
    pub description: Option<&'static str>,
}

#[derive(Clone, Copy)]
pub struct Labelled {
    pub id: i64,
    pub title: &'static str,
    pub color: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ElabKind {
    Experiment,
    Item,
}

pub struct ElabEntity {
    pub kind: ElabKind,
    pub id: i64,
    pub elabid: String,
    pub title: String,
    pub body: String,
    pub date: NaiveDate,
    pub category: Labelled,
    pub status: Option<Labelled>,
    pub user: usize,
    pub created_at: NaiveDateTime,
    pub modified_at: NaiveDateTime,
    pub state: u8,
    pub locked: u8,
    pub rating: u8,
    pub tags: Vec<(i64, &'static str)>,
    pub extra_fields: Vec<(String, ExtraField)>,
    pub items_links: Vec<i64>,
    pub experiments_links: Vec<i64>,
    pub person: Option<u32>,
}

pub const ELAB_USERS: [(i64, &str, &str); 3] = [
    (2, "Camille", "Moreau"),
    (3, "Hugo", "Lefebvre"),
    (5, "Ines", "Girard"),
];

pub struct Elab {
    pub experiments: Vec<ElabEntity>,
    pub items: Vec<ElabEntity>,
    next_experiment: i64,
    next_item: i64,
}

// ---------------------------------------------------------------- generation

fn at(date: NaiveDate, r: &mut Rng) -> NaiveDateTime {
    date.and_hms_milli_opt(
        r.range(8, 18) as u32,
        r.range(0, 59) as u32,
        r.range(0, 59) as u32,
        r.range(0, 999) as u32,
    )
    .expect("valid time")
}

fn plus_days(d: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 {
        d + Days::new(days as u64)
    } else {
        d - Days::new((-days) as u64)
    }
}

impl World {
    /// The world of `subjects` people drawn from `seed`, on day 0.
    pub fn generate(seed: u64, subjects: u32) -> World {
        let persons: Vec<Person> = (1..=subjects).map(|n| Person::generate(seed, n)).collect();
        let mut w = World {
            seed,
            subjects,
            day: 0,
            xnat: Xnat::new(),
            redcap: Redcap {
                records: Vec::new(),
                log: Vec::new(),
            },
            omero: Omero::new(),
            transmart: Transmart {
                study_db_id: 1,
                upload_date: NaiveDate::from_ymd_opt(2024, 11, 18).expect("valid date"),
                patients: Vec::new(),
                visits: Vec::new(),
                observations: Vec::new(),
                next_patient: 1001,
                next_visit: 5001,
            },
            elab: Elab {
                experiments: Vec::new(),
                items: Vec::new(),
                next_experiment: 1,
                next_item: 1,
            },
            persons: Vec::new(),
        };
        let mut rx = Rng::new(seed, "xnat");
        let mut rr = Rng::new(seed, "redcap");
        let mut ro = Rng::new(seed, "omero");
        let mut rt = Rng::new(seed, "transmart");
        for p in &persons {
            if p.in_system(System::Xnat) {
                w.xnat.add_subject(p, &mut rx, None);
            }
            if p.in_system(System::Redcap) {
                w.redcap.add_record(p, &mut rr, None);
            }
            if p.in_system(System::Transmart) {
                w.transmart.add_patient(p, &mut rt);
            }
        }
        // The log is chronological, as REDCap keeps it.
        w.redcap.log.sort_by_key(|e| e.timestamp);
        w.omero.populate(&persons, &mut ro);
        let mut re = Rng::new(seed, "elabftw");
        w.elab.populate(&persons, &mut re);
        w.persons = persons;
        w
    }

    /// The simulated "now".
    pub fn now(&self) -> NaiveDateTime {
        epoch() + TimeDelta::days(i64::from(self.day))
    }

    /// Moves the world one day on: new enrolments, follow-up data, edits and deletions,
    /// all drawn from the stream of that day.
    pub fn advance(&mut self) {
        self.day += 1;
        let day = self.day;
        let mut r = Rng::new(self.seed, &format!("advance-{day}"));
        let today = self.now().date();
        let k = (self.subjects / 50).max(1) as usize;

        // New enrolments land in REDCap and, for most, in XNAT.
        let first_new = self.persons.len() as u32 + 1;
        for i in 0..k as u32 {
            let mut p = Person::generate(self.seed, first_new + i);
            p.enrolled = today;
            p.present = [p.present[0], true, false, false, false];
            p.typo = p.typo.filter(|s| *s == System::Xnat);
            self.redcap.add_record(&p, &mut r, Some(today));
            if p.in_system(System::Xnat) {
                self.xnat.add_subject(&p, &mut r, Some(today));
            }
            self.persons.push(p);
        }
        let now_ms = |r: &mut Rng| at(today, r);

        // REDCap: follow-up visits and corrections, one deletion.
        let n_old = self.redcap.records.len().saturating_sub(k);
        if n_old > 1 {
            for _ in 0..k {
                let i = r.below(n_old);
                let ts = now_ms(&mut r);
                self.redcap.follow_up(i, &mut r, ts);
            }
            let i = r.below(n_old);
            let ts = now_ms(&mut r);
            let rec = self.redcap.records.remove(i);
            self.redcap.log.push(RedcapLog {
                timestamp: ts,
                username: "coordinator1",
                kind: RedcapLogKind::Delete,
                details: format!("record_id = '{}'", rec.id),
                record: rec.id,
            });
        }

        // XNAT: follow-up sessions, a scan re-rated, one session deleted.
        let n_subj = self.xnat.subjects.len();
        if n_subj > 1 {
            for _ in 0..k {
                let i = r.below(n_subj);
                let ts = now_ms(&mut r);
                self.xnat.add_mr_session(i, &mut r, today, ts);
            }
            if !self.xnat.experiments.is_empty() {
                let i = r.below(self.xnat.experiments.len());
                let ts = now_ms(&mut r);
                let e = &mut self.xnat.experiments[i];
                if let Some(scan) = e.scans.last_mut() {
                    scan.quality = "questionable";
                    scan.note = "motion artefacts on review".to_owned();
                    scan.last_modified = ts;
                }
                e.last_modified = ts;
                let j = r.below(self.xnat.experiments.len());
                self.xnat.experiments.remove(j);
            }
        }

        // OMERO: a new image, an annotation edited, an image deleted.
        let ts = now_ms(&mut r);
        self.omero.advance(&self.persons, &mut r, ts);

        // tranSMART: the first new enrolment is loaded, one patient withdraws consent,
        // month-12 results arrive, a value is re-measured and one is withdrawn.
        let withdrawn = (!self.transmart.patients.is_empty())
            .then(|| self.transmart.patients[r.below(self.transmart.patients.len())].id);
        if let Some(id) = withdrawn {
            self.transmart.patients.retain(|p| p.id != id);
            self.transmart.observations.retain(|o| o.patient != id);
            self.transmart.visits.retain(|v| v.patient != id);
        }
        if let Some(p) = self.persons.iter_mut().find(|p| p.enrolled == today) {
            p.present[System::Transmart.index()] = true;
            let p = p.clone();
            self.transmart.add_patient(&p, &mut r);
        }
        self.transmart.advance(k, &mut r, today);

        // eLabFTW: a new assay run, an item edited, an experiment deleted (state 3).
        let ts = now_ms(&mut r);
        self.elab.advance(&mut r, ts);
    }

    /// Ground truth: one row per native subject key served, `(person, system, key)`,
    /// sorted.
    pub fn truth(&self) -> Vec<(String, System, String)> {
        let mut rows = BTreeSet::new();
        let pid = |n: u32| format!("P{n:04}");
        for s in &self.xnat.subjects {
            rows.insert((pid(s.person), System::Xnat, s.label.clone()));
        }
        for rec in &self.redcap.records {
            rows.insert((pid(rec.person), System::Redcap, rec.id.clone()));
        }
        for img in &self.omero.images {
            if let (Some(p), Some(ann)) = (img.person, &img.annotation)
                && let Some((_, v)) = ann.values.iter().find(|(k, _)| k == "Subject")
            {
                rows.insert((pid(p), System::Omero, v.clone()));
            }
        }
        for p in &self.transmart.patients {
            rows.insert((pid(p.person), System::Transmart, p.subject.clone()));
        }
        for item in &self.elab.items {
            if let Some(p) = item.person
                && item.state != 3
                && let Some(key) = elab_subject_key(item)
            {
                rows.insert((pid(p), System::Elabftw, key));
            }
        }
        rows.into_iter().collect()
    }

    /// The truth as CSV with the header `person,system,subject_key`.
    pub fn truth_csv(&self) -> String {
        let mut out = String::from("person,system,subject_key\n");
        for (p, s, k) in self.truth() {
            out.push_str(&format!("{p},{s},{k}\n"));
        }
        out
    }
}

/// The subject code an eLabFTW item carries: its `Subject ID` field, else the code in
/// its title.
pub fn elab_subject_key(item: &ElabEntity) -> Option<String> {
    item.extra_fields
        .iter()
        .find(|(k, _)| k == "Subject ID")
        .and_then(|(_, f)| f.value.as_str().map(str::to_owned))
        .or_else(|| {
            item.title
                .split_whitespace()
                .find(|w| w.starts_with("INT"))
                .map(|w| w.split('-').next().unwrap_or(w).to_owned())
        })
}

// ---------------------------------------------------------------- XNAT generation

const MR_PROTOCOL: [(&str, &str, &str, u32); 5] = [
    ("1", "Localizer", "3 Plane Localizer", 9),
    ("2", "T1w", "MPRAGE_SAG_1mm", 176),
    ("3", "FLAIR", "AX_T2_FLAIR", 48),
    ("4", "DWI", "DTI_64dir_b1000", 4160),
    ("5", "rsfMRI", "BOLD_resting_8min", 240),
];

const OPERATORS: [&str; 4] = ["JD", "ML", "SB", "KT"];

impl Xnat {
    fn new() -> Xnat {
        Xnat {
            projects: vec![
                XnatProject {
                    id: XNAT_MAIN,
                    name: "Memory Clinic Imaging",
                    description: "Structural and diffusion MRI of the memory clinic cohort",
                    pi_firstname: "Claire",
                    pi_lastname: "Dubois",
                },
                XnatProject {
                    id: XNAT_PET,
                    name: "Amyloid PET substudy",
                    description: "PiB amyloid PET; subjects are shared from MEMCLIN",
                    pi_firstname: "Marc",
                    pi_lastname: "Fontaine",
                },
            ],
            subjects: Vec::new(),
            experiments: Vec::new(),
            next_subject: 1,
            next_experiment: 1,
            next_scan_pk: 10_001,
        }
    }

    fn add_subject(&mut self, p: &Person, r: &mut Rng, today: Option<NaiveDate>) {
        let id = format!("XNAT_S{:05}", self.next_subject);
        self.next_subject += 1;
        let insert = at(today.unwrap_or(p.enrolled), r);
        let yob = p.birth_year + i32::from(p.conflicting_birth_year);
        let pet = today.is_none() && r.chance(0.3);
        self.subjects.push(XnatSubject {
            id,
            label: p.xnat_label(),
            project: XNAT_MAIN,
            shared_into: if pet { vec![XNAT_PET] } else { Vec::new() },
            insert_date: insert,
            last_modified: insert,
            gender: match p.sex {
                Sex::Female => "female",
                Sex::Male => "male",
            },
            yob,
            handedness: if r.chance(0.9) { "right" } else { "left" },
            person: p.n,
        });
        let i = self.subjects.len() - 1;
        let visits = if today.is_some() { 1 } else { r.range(1, 3) };
        for v in 0..visits {
            let date = match today {
                Some(t) => t,
                None => plus_days(p.enrolled, v * 365 + r.range(0, 20)),
            };
            // Nothing is acquired after the simulated "now".
            if today.is_none() && date >= epoch().date() {
                break;
            }
            let ts = at(date, r);
            self.add_mr_session(i, r, date, ts);
        }
        if pet {
            let date = plus_days(p.enrolled, r.range(10, 60));
            self.add_pet_session(i, r, date);
        }
    }

    fn new_experiment_id(&mut self) -> String {
        let id = format!("XNAT_E{:05}", self.next_experiment);
        self.next_experiment += 1;
        id
    }

    fn add_mr_session(&mut self, subject: usize, r: &mut Rng, date: NaiveDate, ts: NaiveDateTime) {
        let id = self.new_experiment_id();
        let (sid, label, person) = {
            let s = &self.subjects[subject];
            (s.id.clone(), s.label.clone(), s.person)
        };
        let n = self
            .experiments
            .iter()
            .filter(|e| e.subject_id == sid && e.modality == "MR")
            .count()
            + 1;
        let (model, manufacturer, station, field) = if r.chance(0.7) {
            ("Prisma", "SIEMENS", "MRC40512", "3.0")
        } else {
            ("SIGNA Premier", "GE MEDICAL SYSTEMS", "GEPREM01", "3.0")
        };
        let mut scans = Vec::new();
        for (sid_, ty, desc, frames) in MR_PROTOCOL {
            if ty == "rsfMRI" && r.chance(0.25) {
                continue;
            }
            scans.push(self.scan(sid_, "xnat:mrScanData", ty, desc, frames, r, ts));
        }
        if r.chance(0.3) {
            // Scanner-derived series get numbers far from the acquired ones.
            scans.push(self.scan(
                "500",
                "xnat:mrScanData",
                "T1w",
                "MPRAGE_SAG_1mm_ND",
                176,
                r,
                ts,
            ));
        }
        self.experiments.push(XnatExperiment {
            id,
            label: format!("{label}_MR{n:02}"),
            project: XNAT_MAIN,
            subject_id: sid,
            xsi_type: "xnat:mrSessionData",
            modality: "MR",
            date,
            time: ts.time(),
            insert_date: ts,
            last_modified: ts,
            scanner_model: model,
            scanner_manufacturer: manufacturer,
            scanner_station: station,
            field_strength: Some(field),
            operator: r.pick(&OPERATORS).to_string(),
            uid: format!(
                "1.2.826.0.1.3680043.9.7133.{}",
                r.next_u64() % 10_000_000_000
            ),
            weight: (r.normal(72.0, 12.0) * 10.0).round() / 10.0,
            session_type: if n == 1 { "Baseline" } else { "Follow-up" },
            tracer: None,
            scans,
            person,
        });
    }

    fn add_pet_session(&mut self, subject: usize, r: &mut Rng, date: NaiveDate) {
        let id = self.new_experiment_id();
        let ts = at(date, r);
        let (sid, label, person) = {
            let s = &self.subjects[subject];
            (s.id.clone(), s.label.clone(), s.person)
        };
        let scans = vec![
            self.scan("1", "xnat:ctScanData", "CT", "CT_AC_low_dose", 120, r, ts),
            self.scan(
                "2",
                "xnat:petScanData",
                "PET",
                "PIB_AC_40-60min",
                188,
                r,
                ts,
            ),
        ];
        self.experiments.push(XnatExperiment {
            id,
            label: format!("{label}_PET01"),
            project: XNAT_PET,
            subject_id: sid,
            xsi_type: "xnat:petSessionData",
            modality: "PET",
            date,
            time: ts.time(),
            insert_date: ts,
            last_modified: ts,
            scanner_model: "Biograph Vision 600",
            scanner_manufacturer: "SIEMENS",
            scanner_station: "PETCT01",
            field_strength: None,
            operator: r.pick(&OPERATORS).to_string(),
            uid: format!(
                "1.2.826.0.1.3680043.9.7133.{}",
                r.next_u64() % 10_000_000_000
            ),
            weight: (r.normal(72.0, 12.0) * 10.0).round() / 10.0,
            session_type: "Amyloid PET",
            tracer: Some("PIB"),
            scans,
            person,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn scan(
        &mut self,
        id: &str,
        xsi_type: &'static str,
        scan_type: &'static str,
        desc: &'static str,
        frames: u32,
        r: &mut Rng,
        ts: NaiveDateTime,
    ) -> XnatScan {
        let pk = self.next_scan_pk;
        self.next_scan_pk += 1;
        let q = r.below(100);
        XnatScan {
            id: id.to_owned(),
            pk,
            xsi_type,
            scan_type,
            series_description: desc,
            quality: match q {
                0..=89 => "usable",
                90..=96 => "questionable",
                _ => "unusable",
            },
            note: if q > 96 {
                "severe motion".to_owned()
            } else {
                String::new()
            },
            frames,
            last_modified: ts,
        }
    }
}

// ---------------------------------------------------------------- REDCap generation

const MEDICATIONS: [(&str, &[u32]); 6] = [
    ("Donepezil", &[5, 10]),
    ("Rivastigmine", &[3, 6]),
    ("Memantine", &[10, 20]),
    ("Atorvastatin", &[20, 40]),
    ("Ramipril", &[5, 10]),
    ("Sertraline", &[50, 100]),
];

fn moca_for(dx: Diagnosis, r: &mut Rng) -> i64 {
    let mean = match dx {
        Diagnosis::CognitivelyNormal => 27.0,
        Diagnosis::Mci => 22.0,
        Diagnosis::Alzheimer => 16.0,
    };
    r.normal(mean, 2.5).round().clamp(0.0, 30.0) as i64
}

fn vals(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

impl Redcap {
    fn add_record(&mut self, p: &Person, r: &mut Rng, today: Option<NaiveDate>) {
        let base = today.unwrap_or(p.enrolled);
        let created = at(base, r);
        let mut rows = Vec::new();
        let comorbid: Vec<(String, String)> = [1, 2, 3, 4, 99]
            .iter()
            .map(|c| {
                let p = if *c == 99 { 0.05 } else { 0.25 };
                (
                    format!("comorbid___{c}"),
                    if r.chance(p) { "1" } else { "0" }.to_owned(),
                )
            })
            .collect();
        let mut baseline = vals(&[
            ("consent_date", base.to_string()),
            (
                "sex",
                match p.sex {
                    Sex::Female => "1",
                    Sex::Male => "2",
                }
                .to_owned(),
            ),
            ("birth_year", p.birth_year.to_string()),
            ("education_years", r.range(6, 20).to_string()),
            (
                "handedness",
                if r.chance(0.9) { "1" } else { "2" }.to_owned(),
            ),
            ("demographics_complete", "2".to_owned()),
        ]);
        baseline.extend(comorbid);
        baseline.extend(vals(&[
            (
                "family_history_dementia",
                if r.chance(0.3) { "1" } else { "0" }.to_owned(),
            ),
            ("smoking", r.range(0, 2).to_string()),
            ("medical_history_complete", "2".to_owned()),
        ]));
        baseline.extend(cognitive(p.diagnosis, base, r, 0));
        rows.push(RedcapRow {
            event: REDCAP_EVENTS[0].1,
            repeat: None,
            values: baseline,
        });
        let n_meds = r.range(0, 3);
        for i in 1..=n_meds {
            rows.push(med_row(REDCAP_EVENTS[0].1, i as u32, base, r));
        }
        let mut modified = created;
        if today.is_none() {
            // Follow-up visits already done by day 0.
            for (ev, months) in [(1usize, 12i64), (2, 24)] {
                let date = plus_days(base, months * 30 + r.range(0, 30));
                if date >= epoch().date() || !r.chance(0.75) {
                    break;
                }
                let mut row = cognitive(p.diagnosis, date, r, months);
                row.shrink_to_fit();
                rows.push(RedcapRow {
                    event: REDCAP_EVENTS[ev].1,
                    repeat: None,
                    values: row,
                });
                modified = at(date, r);
            }
        }
        let id = p.redcap_record();
        self.log.push(RedcapLog {
            timestamp: created,
            username: "coordinator1",
            kind: RedcapLogKind::Add,
            record: id.clone(),
            details: format!("record_id = '{id}'"),
        });
        if modified > created {
            // Every change is in REDCap's log, follow-up visits included.
            self.log.push(RedcapLog {
                timestamp: modified,
                username: "coordinator2",
                kind: RedcapLogKind::Edit,
                record: id.clone(),
                details: "assessment_date, moca_total, mmse_total, cdr_global".to_owned(),
            });
        }
        self.records.push(RedcapRecord {
            id,
            modified,
            rows,
            person: p.n,
        });
    }

    /// The next visit for record `i`, or a correction of its last score.
    fn follow_up(&mut self, i: usize, r: &mut Rng, ts: NaiveDateTime) {
        let rec = &mut self.records[i];
        let done = rec.rows.iter().filter(|row| row.repeat.is_none()).count();
        if done < REDCAP_EVENTS.len() {
            let dx = if r.chance(0.5) {
                Diagnosis::Mci
            } else {
                Diagnosis::CognitivelyNormal
            };
            rec.rows.push(RedcapRow {
                event: REDCAP_EVENTS[done].1,
                repeat: None,
                values: cognitive(dx, ts.date(), r, 12 * done as i64),
            });
            if r.chance(0.5) {
                let inst = rec
                    .rows
                    .iter()
                    .filter(|row| row.event == REDCAP_EVENTS[done].1 && row.repeat.is_some())
                    .count() as u32
                    + 1;
                if done == 1 {
                    rec.rows
                        .push(med_row(REDCAP_EVENTS[done].1, inst, ts.date(), r));
                }
            }
        } else if let Some(row) = rec.rows.iter_mut().rev().find(|row| row.repeat.is_none())
            && let Some(v) = row.values.iter_mut().find(|(k, _)| k == "moca_total")
        {
            let old: i64 = v.1.parse().unwrap_or(20);
            v.1 = (old + 1).min(30).to_string();
        }
        rec.modified = ts;
        self.log.push(RedcapLog {
            timestamp: ts,
            username: "coordinator2",
            kind: RedcapLogKind::Edit,
            record: rec.id.clone(),
            details: "moca_total, assessment_date".to_owned(),
        });
    }
}

fn cognitive(dx: Diagnosis, date: NaiveDate, r: &mut Rng, months: i64) -> Vec<(String, String)> {
    let decline = (months / 12) * i64::from(dx != Diagnosis::CognitivelyNormal);
    let moca = (moca_for(dx, r) - decline).max(0);
    let mmse = (moca + 3 + r.range(-1, 2)).clamp(0, 30);
    let cdr = match dx {
        Diagnosis::CognitivelyNormal => "0",
        Diagnosis::Mci => "0.5",
        Diagnosis::Alzheimer => *r.pick(&["1", "2"]),
    };
    let mut v = vals(&[
        ("assessment_date", date.to_string()),
        ("moca_total", moca.to_string()),
        ("mmse_total", mmse.to_string()),
        ("cdr_global", cdr.to_owned()),
    ]);
    if r.chance(0.3) {
        v.push((
            "clinician_notes".to_owned(),
            r.pick(&[
                "Reports word-finding difficulties.",
                "Accompanied by spouse; mild anxiety during testing.",
                "Hearing aid used; instructions repeated.",
                "Fatigued at the end of the session.",
            ])
            .to_string(),
        ));
    }
    v.push(("cognitive_assessment_complete".to_owned(), "2".to_owned()));
    v
}

fn med_row(event: &'static str, instance: u32, date: NaiveDate, r: &mut Rng) -> RedcapRow {
    let (name, doses) = *r.pick(&MEDICATIONS);
    RedcapRow {
        event,
        repeat: Some(("medications", instance)),
        values: vals(&[
            ("med_name", name.to_owned()),
            ("med_dose_mg", r.pick(doses).to_string()),
            ("med_start", plus_days(date, -r.range(0, 900)).to_string()),
            (
                "med_ongoing",
                if r.chance(0.8) { "1" } else { "0" }.to_owned(),
            ),
            ("medications_complete", "2".to_owned()),
        ]),
    }
}

// ---------------------------------------------------------------- OMERO generation

const REGIONS: [&str; 4] = [
    "Hippocampus",
    "Entorhinal cortex",
    "Frontal cortex",
    "Cerebellum",
];
const STAINS: [&str; 4] = ["Anti-Abeta 6E10", "AT8 (p-tau)", "Iba1", "GFAP"];

impl Omero {
    fn new() -> Omero {
        Omero {
            projects: vec![
                OmeroProject {
                    id: 51,
                    name: "Post-mortem histology",
                    description: Some("Brain bank sections of memory clinic donors"),
                    datasets: Vec::new(),
                },
                OmeroProject {
                    id: 52,
                    name: "iPSC-derived neurons",
                    description: None,
                    datasets: Vec::new(),
                },
            ],
            datasets: Vec::new(),
            images: Vec::new(),
            next_image: 1001,
            next_annotation: 3001,
            next_channel: 7001,
        }
    }

    fn populate(&mut self, persons: &[Person], r: &mut Rng) {
        let mut next_ds = 201;
        for region in REGIONS {
            self.datasets.push(OmeroDataset {
                id: next_ds,
                name: format!("{region} sections"),
                description: Some(format!("Immunostained {} sections", region.to_lowercase())),
                images: Vec::new(),
            });
            self.projects[0].datasets.push(next_ds);
            next_ds += 1;
        }
        for batch in 1..=3 {
            self.datasets.push(OmeroDataset {
                id: next_ds,
                name: format!("Differentiation batch {batch}"),
                description: None,
                images: Vec::new(),
            });
            self.projects[1].datasets.push(next_ds);
            next_ds += 1;
        }
        for p in persons.iter().filter(|p| p.in_system(System::Omero)) {
            let n = r.range(1, 4);
            for _ in 0..n {
                let ds = if r.chance(0.7) {
                    self.datasets[r.below(4)].id
                } else {
                    self.datasets[4 + r.below(3)].id
                };
                self.add_image(p, ds, r, None);
            }
        }
    }

    fn add_image(&mut self, p: &Person, dataset: i64, r: &mut Rng, ts: Option<NaiveDateTime>) {
        let id = self.next_image;
        self.next_image += 1;
        let histology = self.projects[0].datasets.contains(&dataset);
        let acquired = plus_days(p.enrolled, r.range(30, 900)).min(plus_days(epoch().date(), -1));
        let acq_ms = acquired
            .and_hms_opt(r.range(8, 18) as u32, r.range(0, 59) as u32, 0)
            .expect("valid time")
            .and_utc()
            .timestamp_millis();
        let subject = p.omero_subject();
        let (name, channels) = if histology {
            let stain = *r.pick(&STAINS);
            let slide = r.range(1, 12);
            (
                format!(
                    "{}_slide{slide:02}_{}.svs",
                    p.canonical(),
                    stain.split(' ').next().unwrap_or(stain)
                ),
                vec![("RGB", -1, None, None)],
            )
        } else {
            (
                format!(
                    "{}_neurons_well{}.czi",
                    p.canonical(),
                    r.pick(&["A1", "A2", "B1", "B3", "C2"])
                ),
                vec![
                    ("DAPI", 65535, Some(353.0), Some(465.0)),
                    ("MAP2", 16711935, Some(493.0), Some(517.0)),
                    ("Tau", -16776961, Some(650.0), Some(665.0)),
                ],
            )
        };
        let channels = channels
            .into_iter()
            .map(|(name, color, ex, em)| {
                let cid = self.next_channel;
                self.next_channel += 1;
                OmeroChannel {
                    id: cid,
                    name,
                    color,
                    excitation: ex,
                    emission: em,
                }
            })
            .collect::<Vec<_>>();
        let annotated = r.chance(0.92);
        let annotation = annotated.then(|| {
            let aid = self.next_annotation;
            self.next_annotation += 1;
            let mut values = vec![("Subject".to_owned(), subject.clone())];
            if histology {
                values.push(("Tissue".to_owned(), r.pick(&REGIONS).to_string()));
                values.push(("Stain".to_owned(), r.pick(&STAINS).to_string()));
                if r.chance(0.2) {
                    // Keys repeat in real map annotations.
                    values.push(("Stain".to_owned(), "Hematoxylin counterstain".to_owned()));
                }
            } else {
                values.push((
                    "Cell line".to_owned(),
                    format!("{}-iPSC-{}", p.canonical(), r.range(1, 3)),
                ));
                values.push(("Day in vitro".to_owned(), r.range(21, 60).to_string()));
            }
            MapAnnotation {
                id: aid,
                link_id: aid + 50_000,
                values,
                date: ts.unwrap_or_else(|| at(acquired, r)),
            }
        });
        let (sx, sy, sz, c) = if histology {
            (
                r.range(20_000, 90_000) as u32,
                r.range(15_000, 60_000) as u32,
                1,
                3,
            )
        } else {
            (2048, 2048, r.range(8, 40) as u32, 3)
        };
        self.images.push(OmeroImage {
            id,
            name,
            description: (!histology && r.chance(0.5))
                .then(|| "Maximum projection pending".to_owned()),
            acquisition_date: (r.chance(0.9)).then_some(acq_ms),
            size: [sx, sy, sz, c, 1],
            physical_size_xy: Some(if histology { 0.2527 } else { 0.1625 }),
            physical_size_z: (!histology).then_some(0.5),
            pixel_type: if histology { "uint8" } else { "uint16" },
            significant_bits: if histology { 8 } else { 12 },
            sha1: r.hex(20),
            channels,
            dataset,
            annotation,
            person: annotated.then_some(p.n),
            tags: Vec::new(),
        });
        // Tags follow from the image's checksum, so adding them drew nothing from the
        // stream every other value comes from.
        if let Some(img) = self.images.last_mut() {
            img.tags = match img.sha1.as_bytes().first() {
                Some(b'0'..=b'5') => vec![(9001, "QC passed")],
                Some(b'6' | b'7') => vec![(9002, "Needs review")],
                _ => Vec::new(),
            };
        }
        if let Some(ds) = self.datasets.iter_mut().find(|d| d.id == dataset) {
            ds.images.push(id);
        }
    }

    fn advance(&mut self, persons: &[Person], r: &mut Rng, ts: NaiveDateTime) {
        let present: Vec<&Person> = persons
            .iter()
            .filter(|p| p.in_system(System::Omero))
            .collect();
        if present.is_empty() || self.images.is_empty() {
            return;
        }
        let p = *r.pick(&present);
        let ds = self.datasets[r.below(self.datasets.len())].id;
        self.add_image(p, ds, r, Some(ts));
        let i = r.below(self.images.len());
        if let Some(ann) = &mut self.images[i].annotation {
            ann.values.push(("Reviewed".to_owned(), "yes".to_owned()));
        }
        let j = r.below(self.images.len());
        let gone = self.images.remove(j);
        for ds in &mut self.datasets {
            ds.images.retain(|id| *id != gone.id);
        }
    }
}

// ---------------------------------------------------------------- tranSMART generation

const APOE: [&str; 5] = ["e3/e3", "e3/e4", "e4/e4", "e2/e3", "e2/e4"];

impl Transmart {
    fn add_patient(&mut self, p: &Person, r: &mut Rng) {
        let id = self.next_patient;
        self.next_patient += 1;
        let sex = if p.conflicting_sex {
            p.sex.other()
        } else {
            p.sex
        };
        let age = i64::from(
            p.enrolled
                .format("%Y")
                .to_string()
                .parse::<i32>()
                .unwrap_or(2020)
                - p.birth_year,
        );
        self.patients.push(TmPatient {
            id,
            subject: p.transmart_subject(),
            in_trial_id: p.n.to_string(),
            sex: match sex {
                Sex::Female => "female",
                Sex::Male => "male",
            },
            age,
            race: r
                .chance(0.7)
                .then(|| *r.pick(&["Caucasian", "Asian", "African", "Other"])),
            person: p.n,
        });
        let visits = if r.chance(0.6) { 2 } else { 1 };
        for v in 0..visits {
            let start_day = plus_days(p.enrolled, v * 365 + r.range(0, 25));
            if start_day >= epoch().date() {
                break;
            }
            self.add_visit(id, v as usize, start_day, p.diagnosis, r);
        }
        let base = self.visits.iter().find(|v| v.patient == id).map(|v| v.id);
        let obs = |concept: usize, value: TmValue| TmObservation {
            concept,
            patient: id,
            visit: None,
            trial_visit: 0,
            start_time: None,
            value,
        };
        self.observations.push(obs(0, TmValue::Num(age as f64)));
        self.observations.push(obs(
            1,
            TmValue::Str(
                match sex {
                    Sex::Female => "Female",
                    Sex::Male => "Male",
                }
                .to_owned(),
            ),
        ));
        self.observations
            .push(obs(2, TmValue::Str(p.diagnosis.label().to_owned())));
        let apoe = if p.diagnosis == Diagnosis::Alzheimer && r.chance(0.5) {
            "e3/e4"
        } else {
            *r.pick(&APOE)
        };
        let mut apoe_obs = obs(3, TmValue::Str(apoe.to_owned()));
        apoe_obs.visit = base;
        self.observations.push(apoe_obs);
    }

    fn add_visit(
        &mut self,
        patient: i64,
        trial_visit: usize,
        day: NaiveDate,
        dx: Diagnosis,
        r: &mut Rng,
    ) {
        let vid = self.next_visit;
        self.next_visit += 1;
        let start = day.and_hms_opt(9, 0, 0).expect("valid time");
        let subject = self
            .patients
            .iter()
            .find(|p| p.id == patient)
            .map(|p| p.subject.clone())
            .unwrap_or_default();
        self.visits.push(TmVisit {
            id: vid,
            patient,
            start,
            end: start + TimeDelta::hours(2),
            encounter: format!("{subject}:V{}", trial_visit + 1),
        });
        let (ab, ptau, nfl) = match dx {
            Diagnosis::CognitivelyNormal => (1050.0, 18.0, 12.0),
            Diagnosis::Mci => (780.0, 26.0, 17.0),
            Diagnosis::Alzheimer => (560.0, 38.0, 24.0),
        };
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
        let mut measures = vec![(6usize, round1(r.normal(nfl, nfl * 0.2)).max(1.0))];
        if r.chance(0.5) {
            measures.push((4, round1(r.normal(ab, 120.0)).max(100.0)));
            measures.push((5, round1(r.normal(ptau, 5.0)).max(5.0)));
        }
        for (concept, v) in measures {
            self.observations.push(TmObservation {
                concept,
                patient,
                visit: Some(vid),
                trial_visit,
                start_time: Some(start),
                value: TmValue::Num(v),
            });
        }
    }

    fn advance(&mut self, k: usize, r: &mut Rng, today: NaiveDate) {
        if self.patients.is_empty() {
            return;
        }
        let mut added = 0;
        for _ in 0..k * 3 {
            let p = &self.patients[r.below(self.patients.len())];
            let (pid, n_visits) = (
                p.id,
                self.visits.iter().filter(|v| v.patient == p.id).count(),
            );
            if n_visits == 1 && added < k {
                self.add_visit(pid, 1, today, Diagnosis::Mci, r);
                added += 1;
            }
        }
        let numeric: Vec<usize> = (0..self.observations.len())
            .filter(|&i| {
                matches!(self.observations[i].value, TmValue::Num(_))
                    && self.observations[i].concept == 6
            })
            .collect();
        if numeric.len() > 1 {
            let i = numeric[r.below(numeric.len())];
            if let TmValue::Num(v) = &mut self.observations[i].value {
                *v = ((*v * 1.05) * 10.0).round() / 10.0;
            }
            let j = numeric[r.below(numeric.len())];
            self.observations.remove(j);
        }
        self.upload_date = today;
    }
}

// ---------------------------------------------------------------- eLabFTW generation

const SAMPLE: Labelled = Labelled {
    id: 4,
    title: "Biological sample",
    color: "29aeb9",
};
const ASSAY: Labelled = Labelled {
    id: 2,
    title: "Biomarker assay",
    color: "e56ad6",
};
const STATUSES: [Labelled; 4] = [
    Labelled {
        id: 1,
        title: "Running",
        color: "29AEB9",
    },
    Labelled {
        id: 2,
        title: "Success",
        color: "54AA08",
    },
    Labelled {
        id: 3,
        title: "Need to be redone",
        color: "C0C0C0",
    },
    Labelled {
        id: 4,
        title: "Fail",
        color: "C24F3D",
    },
];

fn text_field(value: &str) -> ExtraField {
    ExtraField {
        ftype: "text",
        value: json!(value),
        unit: None,
        units: None,
        options: None,
        group_id: None,
        position: None,
        description: None,
    }
}

impl Elab {
    fn populate(&mut self, persons: &[Person], r: &mut Rng) {
        for p in persons.iter().filter(|p| p.in_system(System::Elabftw)) {
            let n = r.range(1, 2);
            for s in 0..n {
                self.add_item(p, s as u8, r, None);
            }
        }
        let n_exp = (self.items.len() / 4).max(2);
        for _ in 0..n_exp {
            self.add_experiment(r, None);
        }
    }

    fn add_item(&mut self, p: &Person, serial: u8, r: &mut Rng, ts: Option<NaiveDateTime>) {
        let id = self.next_item;
        self.next_item += 1;
        let subject = p.elab_subject();
        let kind = *r.pick(&["Plasma", "Serum", "CSF", "PBMC"]);
        let letter = (b'A' + serial) as char;
        let collected = plus_days(p.enrolled, r.range(0, 40));
        let created = ts.unwrap_or_else(|| at(plus_days(collected, 1), r));
        let mut fields = Vec::new();
        // A fifth of the samples name their subject only in the title.
        if r.chance(0.8) {
            let mut f = text_field(&subject);
            f.group_id = Some(json!(1));
            f.position = Some(1);
            f.description = Some("Participant code as on the consent form");
            fields.push(("Subject ID".to_owned(), f));
        }
        fields.push((
            "Sample type".to_owned(),
            ExtraField {
                ftype: "select",
                value: json!(kind),
                options: Some(vec!["Plasma", "Serum", "CSF", "PBMC"]),
                group_id: Some(json!("1")),
                position: Some(2),
                ..text_field("")
            },
        ));
        fields.push((
            "Volume".to_owned(),
            ExtraField {
                ftype: "number",
                value: json!(format!("{:.1}", r.range(2, 20) as f64 / 10.0)),
                unit: Some("mL"),
                units: Some(vec!["mL", "µL"]),
                group_id: Some(json!(2)),
                position: Some(1),
                ..text_field("")
            },
        ));
        fields.push((
            "Collection date".to_owned(),
            ExtraField {
                ftype: "date",
                value: json!(collected.to_string()),
                group_id: Some(json!(2)),
                position: Some(2),
                ..text_field("")
            },
        ));
        fields.push((
            "Freezer position".to_owned(),
            text_field(&format!(
                "-80 °C freezer {}, rack {}, box {}",
                r.pick(&["A", "B"]),
                r.range(1, 8),
                r.range(1, 20)
            )),
        ));
        let tag = if kind == "CSF" {
            (12, "csf")
        } else {
            (11, "plasma")
        };
        self.items.push(ElabEntity {
            kind: ElabKind::Item,
            id,
            elabid: format!("{}-{}", created.format("%Y%m%d"), r.hex(20)),
            title: format!("{kind} aliquot {subject}-{letter}"),
            body: format!(
                "<p>{kind} aliquot collected at the baseline visit. Thawed at most once.</p>"
            ),
            date: collected,
            category: SAMPLE,
            status: None,
            user: r.below(ELAB_USERS.len()),
            created_at: created,
            modified_at: created,
            state: 1,
            locked: 0,
            rating: 0,
            tags: vec![tag, (15, "biobank")],
            extra_fields: fields,
            items_links: Vec::new(),
            experiments_links: Vec::new(),
            person: Some(p.n),
        });
    }

    fn add_experiment(&mut self, r: &mut Rng, ts: Option<NaiveDateTime>) {
        if self.items.is_empty() {
            return;
        }
        let id = self.next_experiment;
        self.next_experiment += 1;
        let assay = *r.pick(&[
            "NfL Simoa run",
            "Abeta42 ELISA plate",
            "p-tau181 Simoa run",
            "PBMC isolation",
        ]);
        let n_links = r.range(3, 8) as usize;
        let mut links: Vec<i64> = (0..n_links)
            .map(|_| self.items[r.below(self.items.len())].id)
            .collect();
        links.sort_unstable();
        links.dedup();
        let date = match ts {
            Some(t) => t.date(),
            None => {
                let latest = links
                    .iter()
                    .filter_map(|l| self.items.iter().find(|i| i.id == *l))
                    .map(|i| i.date)
                    .max()
                    .unwrap_or(epoch().date());
                plus_days(latest, r.range(5, 60)).min(plus_days(epoch().date(), -1))
            }
        };
        let created = ts.unwrap_or_else(|| at(date, r));
        let status = STATUSES[match r.below(10) {
            0..=1 => 0,
            2..=7 => 1,
            8 => 2,
            _ => 3,
        }];
        let lot = format!("{}{}", r.pick(&["LOT-", "L"]), r.range(10_000, 99_999));
        let fields = vec![
            (
                "Kit lot".to_owned(),
                ExtraField {
                    group_id: Some(json!(1)),
                    ..text_field(&lot)
                },
            ),
            (
                "Operator".to_owned(),
                ExtraField {
                    ftype: "select",
                    value: json!(ELAB_USERS[r.below(3)].1),
                    options: Some(ELAB_USERS.iter().map(|u| u.1).collect()),
                    ..text_field("")
                },
            ),
            (
                "Samples".to_owned(),
                ExtraField {
                    ftype: "items",
                    value: json!(links.first().copied().unwrap_or(0)),
                    description: Some("First linked sample"),
                    ..text_field("")
                },
            ),
        ];
        let tags = match assay {
            "PBMC isolation" => vec![(16, "pbmc")],
            "Abeta42 ELISA plate" => vec![(14, "elisa"), (12, "csf")],
            _ => vec![(13, "simoa"), (11, "plasma")],
        };
        let exp_links = if !self.experiments.is_empty() && r.chance(0.3) {
            vec![self.experiments[r.below(self.experiments.len())].id]
        } else {
            Vec::new()
        };
        self.experiments.push(ElabEntity {
            kind: ElabKind::Experiment,
            id,
            elabid: format!("{}-{}", created.format("%Y%m%d"), r.hex(20)),
            title: format!("{assay} {id}"),
            body: format!(
                "<h1>{assay}</h1><p>{} samples measured in duplicate. Calibrators within range; \
                 CV below 10 %.</p>",
                links.len()
            ),
            date,
            category: ASSAY,
            status: Some(status),
            user: r.below(ELAB_USERS.len()),
            created_at: created,
            modified_at: created,
            state: 1,
            locked: u8::from(status.id == 2 && r.chance(0.3)),
            rating: r.range(0, 5) as u8,
            tags,
            extra_fields: fields,
            items_links: links,
            experiments_links: exp_links,
            person: None,
        });
    }

    fn advance(&mut self, r: &mut Rng, ts: NaiveDateTime) {
        self.add_experiment(r, Some(ts));
        if !self.items.is_empty() {
            let i = r.below(self.items.len());
            let item = &mut self.items[i];
            if let Some((_, f)) = item.extra_fields.iter_mut().find(|(k, _)| k == "Volume") {
                f.value = json!("0.1");
            }
            item.modified_at = ts;
        }
        let live: Vec<usize> = (0..self.experiments.len())
            .filter(|&i| self.experiments[i].state == 1)
            .collect();
        if live.len() > 1 {
            let i = live[r.below(live.len() - 1)];
            let e = &mut self.experiments[i];
            e.state = 3;
            e.modified_at = ts;
        }
    }
}
