//! The REDCap API: one `POST /api/` endpoint, form-encoded, selected by `content`.
//!
//! Reproduced from `reference/redcap/`: a longitudinal project (three events) with a
//! repeating instrument and a checkbox field; record export in flat or EAV form where
//! every value is a string except `redcap_repeat_instance`, an integer on repeating rows
//! and `""` elsewhere (as the REDCap 9 JSON export in the references has it); checkbox
//! columns `field___code`; XML when `format` is absent; the real 403 body for a bad
//! token; `content=log` for the audit trail, where deletions are found.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::NaiveDateTime;
use serde_json::{Map, Value, json};

use crate::server::{SimState, finish, json_response};
use crate::world::{REDCAP_EVENTS, RedcapLogKind, World};

pub(crate) fn router(st: Arc<SimState>) -> Router {
    finish(Router::new().route("/api/", post(api)), st)
}

struct Field {
    name: &'static str,
    form: &'static str,
    ftype: &'static str,
    label: &'static str,
    choices: &'static str,
    validation: &'static str,
    min: &'static str,
    max: &'static str,
    identifier: &'static str,
}

const fn f(
    name: &'static str,
    form: &'static str,
    ftype: &'static str,
    label: &'static str,
    choices: &'static str,
    validation: &'static str,
) -> Field {
    Field {
        name,
        form,
        ftype,
        label,
        choices,
        validation,
        min: "",
        max: "",
        identifier: "",
    }
}

const DICTIONARY: [Field; 18] = [
    f("record_id", "demographics", "text", "Record ID", "", ""),
    f(
        "consent_date",
        "demographics",
        "text",
        "Date of consent",
        "",
        "date_ymd",
    ),
    f(
        "sex",
        "demographics",
        "radio",
        "Sex",
        "1, Female | 2, Male",
        "",
    ),
    Field {
        min: "1900",
        max: "2015",
        identifier: "y",
        ..f(
            "birth_year",
            "demographics",
            "text",
            "Year of birth",
            "",
            "integer",
        )
    },
    Field {
        min: "0",
        max: "30",
        ..f(
            "education_years",
            "demographics",
            "text",
            "Years of education",
            "",
            "integer",
        )
    },
    f(
        "handedness",
        "demographics",
        "dropdown",
        "Handedness",
        "1, Right | 2, Left | 3, Ambidextrous",
        "",
    ),
    f(
        "comorbid",
        "medical_history",
        "checkbox",
        "Comorbidities",
        "1, Hypertension | 2, Diabetes mellitus | 3, Hypercholesterolaemia | 4, Depression | 99, Other",
        "",
    ),
    f(
        "family_history_dementia",
        "medical_history",
        "yesno",
        "Family history of dementia",
        "",
        "",
    ),
    f(
        "smoking",
        "medical_history",
        "radio",
        "Smoking",
        "0, Never | 1, Former | 2, Current",
        "",
    ),
    f(
        "assessment_date",
        "cognitive_assessment",
        "text",
        "Assessment date",
        "",
        "date_ymd",
    ),
    Field {
        min: "0",
        max: "30",
        ..f(
            "moca_total",
            "cognitive_assessment",
            "text",
            "MoCA total score",
            "",
            "integer",
        )
    },
    Field {
        min: "0",
        max: "30",
        ..f(
            "mmse_total",
            "cognitive_assessment",
            "text",
            "MMSE total score",
            "",
            "integer",
        )
    },
    f(
        "cdr_global",
        "cognitive_assessment",
        "dropdown",
        "CDR global score",
        "0, 0 | 0.5, 0.5 | 1, 1 | 2, 2 | 3, 3",
        "",
    ),
    f(
        "clinician_notes",
        "cognitive_assessment",
        "notes",
        "Clinician notes",
        "",
        "",
    ),
    f("med_name", "medications", "text", "Medication", "", ""),
    f(
        "med_dose_mg",
        "medications",
        "text",
        "Daily dose (mg)",
        "",
        "number",
    ),
    f(
        "med_start",
        "medications",
        "text",
        "Start date",
        "",
        "date_ymd",
    ),
    f("med_ongoing", "medications", "yesno", "Ongoing", "", ""),
];

const FORMS: [(&str, &str); 4] = [
    ("demographics", "Demographics"),
    ("medical_history", "Medical History"),
    ("cognitive_assessment", "Cognitive Assessment"),
    ("medications", "Medications"),
];

const REPEATING: &str = "medications";

/// Which forms each event collects.
const FORM_EVENTS: [(&str, &str); 8] = [
    ("baseline_arm_1", "demographics"),
    ("baseline_arm_1", "medical_history"),
    ("baseline_arm_1", "cognitive_assessment"),
    ("baseline_arm_1", "medications"),
    ("month_12_arm_1", "cognitive_assessment"),
    ("month_12_arm_1", "medications"),
    ("month_24_arm_1", "cognitive_assessment"),
    ("month_24_arm_1", "medications"),
];

fn choices(field: &Field) -> Vec<(&'static str, &'static str)> {
    match field.ftype {
        "yesno" => vec![("1", "Yes"), ("0", "No")],
        _ => field
            .choices
            .split('|')
            .filter_map(|c| c.split_once(','))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect(),
    }
}

/// Export columns of one form, checkboxes expanded, its `_complete` column last.
fn form_columns(form: &str) -> Vec<String> {
    let mut cols = Vec::new();
    for field in DICTIONARY.iter().filter(|f| f.form == form) {
        if field.ftype == "checkbox" {
            for (code, _) in choices(field) {
                cols.push(format!("{}___{code}", field.name));
            }
        } else {
            cols.push(field.name.to_owned());
        }
    }
    cols.push(format!("{form}_complete"));
    cols
}

fn column_field(col: &str) -> Option<&'static Field> {
    let base = col.split("___").next().unwrap_or(col);
    DICTIONARY.iter().find(|f| f.name == base)
}

fn column_form(col: &str) -> Option<&'static str> {
    if let Some(form) = col.strip_suffix("_complete")
        && let Some((name, _)) = FORMS.iter().find(|(n, _)| *n == form)
    {
        return Some(name);
    }
    column_field(col).map(|f| f.form)
}

fn error(status: StatusCode, json_errors: bool, message: &str) -> Response {
    if json_errors {
        json_response(
            status,
            "application/json; charset=utf-8",
            &json!({ "error": message }),
        )
    } else {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<hash>\n  <error>{}</error>\n</hash>",
            xml_escape(message)
        );
        (
            status,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

fn forbidden() -> Response {
    let mut r = json_response(
        StatusCode::FORBIDDEN,
        "application/json; charset=utf-8",
        &json!({"error": "You do not have permissions to use the API"}),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate"),
    );
    r
}

/// `records=a,b`, or the array form `records[0]=a&records[1]=b`.
fn array_param(pairs: &[(String, String)], name: &str) -> Option<Vec<String>> {
    let prefix = format!("{name}[");
    let mut out: Vec<String> = Vec::new();
    let mut seen = false;
    for (k, v) in pairs {
        if k == name {
            seen = true;
            out.extend(
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
            );
        } else if k.starts_with(&prefix) && k.ends_with(']') {
            seen = true;
            if !v.trim().is_empty() {
                out.push(v.trim().to_owned());
            }
        }
    }
    (seen && !out.is_empty()).then_some(out)
}

async fn api(State(st): State<Arc<SimState>>, body: Bytes) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if get("token") != Some(st.credentials.token.as_str()) {
        return forbidden();
    }
    let format = get("format").unwrap_or("xml");
    let json_errors = get("returnFormat").unwrap_or(format) == "json";
    if !["json", "csv", "xml"].contains(&format) {
        return error(
            StatusCode::BAD_REQUEST,
            json_errors,
            "The value of the parameter \"format\" is not valid",
        );
    }
    let world = st.world();
    let content = get("content").unwrap_or("");
    let result = match content {
        "version" => {
            return (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "14.5.10",
            )
                .into_response();
        }
        "project" => Ok(Payload::Object(project_info())),
        "metadata" => Ok(Payload::Rows(metadata(array_param(&pairs, "fields")))),
        "instrument" => Ok(Payload::Rows(
            FORMS
                .iter()
                .map(|(n, l)| obj(json!({"instrument_name": n, "instrument_label": l})))
                .collect(),
        )),
        "event" => Ok(Payload::Rows(
            REDCAP_EVENTS
                .iter()
                .map(|(name, unique, id)| {
                    obj(json!({
                        "event_name": name, "arm_num": 1, "unique_event_name": unique,
                        "custom_event_label": "", "event_id": id,
                    }))
                })
                .collect(),
        )),
        "arm" => Ok(Payload::Rows(vec![obj(json!({"arm_num": 1, "name": "Arm 1"}))])),
        "formEventMapping" => Ok(Payload::Rows(
            FORM_EVENTS
                .iter()
                .map(|(ev, form)| obj(json!({"arm_num": 1, "unique_event_name": ev, "form": form})))
                .collect(),
        )),
        "repeatingFormsEvents" => Ok(Payload::Rows(
            REDCAP_EVENTS
                .iter()
                .map(|(_, unique, _)| {
                    obj(json!({"event_name": unique, "form_name": REPEATING, "custom_form_label": ""}))
                })
                .collect(),
        )),
        "exportFieldNames" => Ok(Payload::Rows(export_field_names())),
        "record" => records(&world, &pairs),
        "log" => log(&world, &pairs),
        "" => Err("The parameter \"content\" is missing".to_owned()),
        _ => Err("The value of the parameter \"content\" is not valid".to_owned()),
    };
    match result {
        Ok(payload) => render(
            payload,
            format,
            if content == "record" {
                "records"
            } else {
                "items"
            },
        ),
        Err(message) => error(StatusCode::BAD_REQUEST, json_errors, &message),
    }
}

enum Payload {
    Object(Map<String, Value>),
    /// Rows, and the CSV header when there may be no row to take it from.
    Rows(Vec<Map<String, Value>>),
    Table(Vec<String>, Vec<Map<String, Value>>),
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn project_info() -> Map<String, Value> {
    obj(json!({
        "project_id": 1742,
        "project_title": "Memory Clinic Cohort",
        "creation_time": "2018-11-05 14:02:11",
        "production_time": "2019-01-07 09:30:00",
        "in_production": 1,
        "project_language": "English",
        "purpose": 2,
        "purpose_other": "",
        "project_notes": "Longitudinal follow-up of memory clinic patients",
        "custom_record_label": "",
        "secondary_unique_field": "",
        "is_longitudinal": 1,
        "has_repeating_instruments_or_events": 1,
        "surveys_enabled": 0,
        "scheduling_enabled": 0,
        "record_autonumbering_enabled": 0,
        "randomization_enabled": 0,
        "ddp_enabled": 0,
        "project_irb_number": "CPP-2018-A01234-52",
        "project_grant_number": "",
        "project_pi_firstname": "Claire",
        "project_pi_lastname": "Dubois",
        "display_today_now_button": 1,
        "missing_data_codes": "",
        "external_modules": "",
        "bypass_branching_erase_field_prompt": "0",
    }))
}

fn metadata(fields: Option<Vec<String>>) -> Vec<Map<String, Value>> {
    DICTIONARY
        .iter()
        .filter(|f| {
            fields
                .as_ref()
                .is_none_or(|fs| fs.iter().any(|n| n == f.name))
        })
        .map(|f| {
            obj(json!({
                "field_name": f.name,
                "form_name": f.form,
                "section_header": "",
                "field_type": f.ftype,
                "field_label": f.label,
                "select_choices_or_calculations": f.choices,
                "field_note": "",
                "text_validation_type_or_show_slider_number": f.validation,
                "text_validation_min": f.min,
                "text_validation_max": f.max,
                "identifier": f.identifier,
                "branching_logic": "",
                "required_field": if f.name == "record_id" { "y" } else { "" },
                "custom_alignment": "",
                "question_number": "",
                "matrix_group_name": "",
                "matrix_ranking": "",
                "field_annotation": "",
            }))
        })
        .collect()
}

fn export_field_names() -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for field in &DICTIONARY {
        if field.ftype == "checkbox" {
            for (code, _) in choices(field) {
                out.push(obj(json!({
                    "original_field_name": field.name,
                    "choice_value": code,
                    "export_field_name": format!("{}___{code}", field.name),
                })));
            }
        } else {
            out.push(obj(json!({
                "original_field_name": field.name, "choice_value": "", "export_field_name": field.name,
            })));
        }
    }
    out
}

fn parse_time(name: &str, v: &str) -> Result<NaiveDateTime, String> {
    let v = v.trim();
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(t);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("valid time"));
    }
    Err(format!(
        "The value of the parameter \"{name}\" is not a valid date/time: {v:?} (expected YYYY-MM-DD HH:MM:SS)"
    ))
}

fn records(w: &World, pairs: &[(String, String)]) -> Result<Payload, String> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let typ = get("type").unwrap_or("flat");
    if typ != "flat" && typ != "eav" {
        return Err("The value of the parameter \"type\" is not valid".to_owned());
    }
    let labels = get("rawOrLabel") == Some("label");
    let want_records = array_param(pairs, "records");
    let want_fields = array_param(pairs, "fields");
    let want_forms = array_param(pairs, "forms");
    let want_events = array_param(pairs, "events");
    if let Some(fs) = &want_fields
        && let Some(bad) = fs
            .iter()
            .find(|n| !DICTIONARY.iter().any(|f| f.name == n.as_str()))
    {
        return Err(format!(
            "The following values in the parameter \"fields\" are not valid: '{bad}'"
        ));
    }
    if let Some(evs) = &want_events
        && let Some(bad) = evs
            .iter()
            .find(|e| !REDCAP_EVENTS.iter().any(|(_, u, _)| u == e))
    {
        return Err(format!(
            "The following values in the parameter \"events\" are not valid: '{bad}'"
        ));
    }
    let begin = get("dateRangeBegin")
        .filter(|v| !v.is_empty())
        .map(|v| parse_time("dateRangeBegin", v))
        .transpose()?;
    let end = get("dateRangeEnd")
        .filter(|v| !v.is_empty())
        .map(|v| parse_time("dateRangeEnd", v))
        .transpose()?;

    // The columns: record id and the redcap_* columns, then the chosen fields.
    let mut columns = vec!["record_id".to_owned(), "redcap_event_name".to_owned()];
    columns.push("redcap_repeat_instrument".to_owned());
    columns.push("redcap_repeat_instance".to_owned());
    for (form, _) in FORMS {
        for col in form_columns(form) {
            if col == "record_id" {
                continue;
            }
            let keep_field = want_fields.as_ref().is_some_and(|fs| {
                column_field(&col).is_some_and(|f| fs.iter().any(|n| n == f.name))
            });
            let keep_form = want_forms
                .as_ref()
                .is_some_and(|fs| fs.iter().any(|n| n == form));
            if (want_fields.is_none() && want_forms.is_none()) || keep_field || keep_form {
                columns.push(col);
            }
        }
    }

    let mut rows = Vec::new();
    for rec in &w.redcap.records {
        if want_records
            .as_ref()
            .is_some_and(|rs| !rs.contains(&rec.id))
        {
            continue;
        }
        if begin.is_some_and(|b| rec.modified < b) || end.is_some_and(|e| rec.modified > e) {
            continue;
        }
        for row in &rec.rows {
            if want_events
                .as_ref()
                .is_some_and(|es| !es.iter().any(|e| e == row.event))
            {
                continue;
            }
            let mut m = Map::new();
            for col in &columns {
                let v: Value = match col.as_str() {
                    "record_id" => json!(rec.id),
                    "redcap_event_name" => {
                        if labels {
                            let name = REDCAP_EVENTS
                                .iter()
                                .find(|(_, u, _)| *u == row.event)
                                .map(|(n, _, _)| *n)
                                .unwrap_or(row.event);
                            json!(format!("{name} (Arm 1: Arm 1)"))
                        } else {
                            json!(row.event)
                        }
                    }
                    "redcap_repeat_instrument" => match row.repeat {
                        Some((form, _)) if labels => json!(
                            FORMS
                                .iter()
                                .find(|(n, _)| *n == form)
                                .map_or(form, |(_, l)| *l)
                        ),
                        Some((form, _)) => json!(form),
                        None => json!(""),
                    },
                    "redcap_repeat_instance" => match row.repeat {
                        Some((_, i)) => json!(i),
                        None => json!(""),
                    },
                    _ => {
                        let in_row = column_form(col)
                            .is_some_and(|form| (form == REPEATING) == row.repeat.is_some());
                        let raw = if in_row {
                            row.values
                                .iter()
                                .find(|(k, _)| k == col)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        } else {
                            String::new()
                        };
                        json!(if labels { label_of(col, &raw) } else { raw })
                    }
                };
                m.insert(col.clone(), v);
            }
            rows.push(m);
        }
    }
    if typ == "eav" {
        let mut eav = Vec::new();
        for row in &rows {
            for (k, v) in row {
                if k.starts_with("redcap_") || k == "record_id" || v.as_str() == Some("") {
                    continue;
                }
                eav.push(obj(json!({
                    "record": row["record_id"],
                    "redcap_event_name": row["redcap_event_name"],
                    "redcap_repeat_instrument": row["redcap_repeat_instrument"],
                    "redcap_repeat_instance": row["redcap_repeat_instance"],
                    "field_name": k,
                    "value": v,
                })));
            }
        }
        let header = [
            "record",
            "redcap_event_name",
            "redcap_repeat_instrument",
            "redcap_repeat_instance",
            "field_name",
            "value",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        return Ok(Payload::Table(header, eav));
    }
    Ok(Payload::Table(columns, rows))
}

fn label_of(col: &str, raw: &str) -> String {
    let Some(field) = column_field(col) else {
        return raw.to_owned();
    };
    match field.ftype {
        "checkbox" => match raw {
            "1" => {
                let code = col.split("___").nth(1).unwrap_or("");
                choices(field)
                    .into_iter()
                    .find(|(c, _)| *c == code)
                    .map_or_else(|| "Checked".to_owned(), |(_, l)| l.to_owned())
            }
            "" => String::new(),
            _ => String::new(),
        },
        "radio" | "dropdown" | "yesno" => choices(field)
            .into_iter()
            .find(|(c, _)| *c == raw)
            .map_or_else(|| raw.to_owned(), |(_, l)| l.to_owned()),
        _ => raw.to_owned(),
    }
}

fn log(w: &World, pairs: &[(String, String)]) -> Result<Payload, String> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let kinds: &[RedcapLogKind] = match get("logtype") {
        None | Some("record") => &[
            RedcapLogKind::Add,
            RedcapLogKind::Edit,
            RedcapLogKind::Delete,
        ],
        Some("record_add") => &[RedcapLogKind::Add],
        Some("record_edit") => &[RedcapLogKind::Edit],
        Some("record_delete") => &[RedcapLogKind::Delete],
        Some("export" | "manage" | "user" | "lock_record" | "page_view") => &[],
        Some(other) => {
            return Err(format!(
                "The value of the parameter \"logtype\" is not valid: {other:?}"
            ));
        }
    };
    let begin = get("beginTime")
        .map(|v| parse_time("beginTime", v))
        .transpose()?;
    let end = get("endTime")
        .map(|v| parse_time("endTime", v))
        .transpose()?;
    let record = get("record");
    let mut out: Vec<Map<String, Value>> = w
        .redcap
        .log
        .iter()
        .filter(|e| kinds.contains(&e.kind))
        .filter(|e| record.is_none_or(|r| r == e.record))
        .filter(|e| begin.is_none_or(|b| e.timestamp >= b) && end.is_none_or(|t| e.timestamp <= t))
        .map(|e| {
            let verb = match e.kind {
                RedcapLogKind::Add => "Created",
                RedcapLogKind::Edit => "Updated",
                RedcapLogKind::Delete => "Deleted",
            };
            obj(json!({
                "timestamp": e.timestamp.format("%Y-%m-%d %H:%M").to_string(),
                "username": e.username,
                "action": format!("{verb} Record {}", e.record),
                "details": e.details,
            }))
        })
        .collect();
    // Newest first, as the Logging page and its export list them.
    out.reverse();
    Ok(Payload::Rows(out))
}

fn render(payload: Payload, format: &str, root: &str) -> Response {
    match format {
        "json" => {
            let v = match payload {
                Payload::Object(m) => Value::Object(m),
                Payload::Rows(rows) | Payload::Table(_, rows) => {
                    Value::Array(rows.into_iter().map(Value::Object).collect())
                }
            };
            json_response(StatusCode::OK, "application/json; charset=utf-8", &v)
        }
        "csv" => {
            let (header, rows) = match payload {
                Payload::Object(m) => (m.keys().cloned().collect(), vec![m]),
                Payload::Rows(rows) => (
                    rows.first()
                        .map(|r| r.keys().cloned().collect())
                        .unwrap_or_default(),
                    rows,
                ),
                Payload::Table(h, rows) => (h, rows),
            };
            let mut out = String::new();
            out.push_str(
                &header
                    .iter()
                    .map(|h: &String| csv_cell(h))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
            for row in rows {
                let cells: Vec<String> = header
                    .iter()
                    .map(|h| csv_cell(&plain(row.get(h).unwrap_or(&Value::Null))))
                    .collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response()
        }
        _ => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n");
            let item = |m: &Map<String, Value>, out: &mut String| {
                for (k, v) in m {
                    out.push_str(&format!("<{k}><![CDATA[{}]]></{k}>", plain(v)));
                }
            };
            match payload {
                Payload::Object(m) => {
                    out.push_str("<project>");
                    item(&m, &mut out);
                    out.push_str("</project>\n");
                }
                Payload::Rows(rows) | Payload::Table(_, rows) => {
                    out.push_str(&format!("<{root}>\n"));
                    for row in rows {
                        out.push_str("<item>");
                        item(&row, &mut out);
                        out.push_str("</item>\n");
                    }
                    out.push_str(&format!("</{root}>\n"));
                }
            }
            ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], out).into_response()
        }
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
