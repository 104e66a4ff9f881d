//! The data dictionary, and the typing of export values by it.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use crossdex_model::Observation;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
struct Field {
    label: String,
    ftype: String,
    validation: String,
    choices: Vec<(String, String)>,
}

/// The fields of a project, by name, as `content=metadata` lists them.
#[derive(Debug, Clone)]
pub struct Dictionary {
    record_id: String,
    fields: HashMap<String, Field>,
}

fn text(m: &Map<String, Value>, k: &str) -> String {
    m.get(k).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// `1, Female | 2, Male` → `[("1", "Female"), ("2", "Male")]`.
fn parse_choices(s: &str) -> Vec<(String, String)> {
    s.split('|')
        .filter_map(|c| c.split_once(','))
        .map(|(k, v)| (k.trim().to_owned(), strip_html(v.trim())))
        .collect()
}

fn strip_html(s: &str) -> String {
    crossdex_http_client::html_to_text(s).replace('\n', " ")
}

fn date(s: &str) -> Option<chrono::DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    None
}

fn number(s: &str) -> Option<f64> {
    // `number_comma_decimal` fields export a decimal comma.
    s.trim()
        .replace(',', ".")
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

impl Dictionary {
    pub fn new(rows: &[Map<String, Value>]) -> Result<Dictionary, String> {
        let first = rows
            .first()
            .ok_or("the data dictionary (content=metadata) is empty")?;
        let record_id = text(first, "field_name");
        let mut fields = HashMap::new();
        for r in rows {
            let name = text(r, "field_name");
            if name.is_empty() {
                continue;
            }
            let ftype = text(r, "field_type");
            let raw_choices = text(r, "select_choices_or_calculations");
            let choices = match ftype.as_str() {
                "radio" | "dropdown" | "checkbox" => parse_choices(&raw_choices),
                "yesno" => vec![("1".into(), "Yes".into()), ("0".into(), "No".into())],
                "truefalse" => vec![("1".into(), "True".into()), ("0".into(), "False".into())],
                _ => Vec::new(),
            };
            fields.insert(
                name,
                Field {
                    label: strip_html(&text(r, "field_label")),
                    ftype,
                    validation: text(r, "text_validation_type_or_show_slider_number"),
                    choices,
                },
            );
        }
        Ok(Dictionary { record_id, fields })
    }

    /// The record id field: the dictionary's first field.
    pub fn record_id_field(&self) -> &str {
        &self.record_id
    }

    /// The observation for export column `col` holding `raw`; `None` for columns that
    /// carry no data (form status, files, signatures, descriptive text).
    pub fn observation(&self, col: &str, raw: &str) -> Option<Observation> {
        if let Some((base, code)) = col.split_once("___")
            && let Some(f) = self.fields.get(base)
            && f.ftype == "checkbox"
        {
            // REDCap writes a code's `-` and `.` as `_` in column names: `-99` is
            // exported as `field____99`.
            let column_code = |c: &str| c.replace(['-', '.'], "_");
            let choice = f
                .choices
                .iter()
                .find(|(c, _)| column_code(c).eq_ignore_ascii_case(code))
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| code.to_owned());
            let checked = raw == "1";
            let v = number(raw).unwrap_or(0.0);
            return Some(
                Observation::number(col, v, if checked { "Checked" } else { "Unchecked" })
                    .with_label(format!("{}: {choice}", f.label)),
            );
        }
        if col.ends_with("_complete") && !self.fields.contains_key(col) {
            return None;
        }
        let Some(f) = self.fields.get(col) else {
            // A column the dictionary does not know (survey timestamps, identifiers of
            // other instruments): kept as text.
            return Some(Observation::text(col, raw));
        };
        let obs = match f.ftype.as_str() {
            "file" | "signature" | "descriptive" => return None,
            "calc" | "slider" => match number(raw) {
                Some(x) => Observation::number(col, x, raw),
                None => Observation::text(col, raw),
            },
            "radio" | "dropdown" | "yesno" | "truefalse" => {
                let label = f
                    .choices
                    .iter()
                    .find(|(c, _)| c == raw)
                    .map(|(_, l)| l.clone())
                    .unwrap_or_else(|| raw.to_owned());
                match number(raw) {
                    Some(x) => Observation::number(col, x, label),
                    None => Observation::text(col, label),
                }
            }
            "text" => {
                let v = f.validation.as_str();
                if v == "integer" || v.starts_with("number") {
                    match number(raw) {
                        Some(x) => Observation::number(col, x, raw),
                        None => Observation::text(col, raw),
                    }
                } else if v.starts_with("date") {
                    match date(raw) {
                        Some(d) => Observation::date(col, d, raw),
                        None => Observation::text(col, raw),
                    }
                } else {
                    Observation::text(col, raw)
                }
            }
            _ => Observation::text(col, raw),
        };
        Some(obs.with_label(f.label.clone()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dict() -> Dictionary {
        let rows: Vec<Map<String, Value>> = [
            json!({"field_name": "record_id", "field_type": "text", "field_label": "ID"}),
            json!({"field_name": "dob", "field_type": "text", "field_label": "Birth", "text_validation_type_or_show_slider_number": "date_ymd"}),
            json!({"field_name": "moca", "field_type": "text", "field_label": "MoCA", "text_validation_type_or_show_slider_number": "integer"}),
            json!({"field_name": "sex", "field_type": "radio", "field_label": "<b>Sex</b>", "select_choices_or_calculations": "1, Female | 2, Male"}),
            json!({"field_name": "cm", "field_type": "checkbox", "field_label": "Comorbid", "select_choices_or_calculations": "1, HTN | 99, Other | -99, Unknown | 1.5, Borderline"}),
            json!({"field_name": "bmi", "field_type": "calc", "field_label": "BMI"}),
            json!({"field_name": "scan", "field_type": "file", "field_label": "Scan"}),
        ]
        .into_iter()
        .map(|v| v.as_object().cloned().expect("object"))
        .collect();
        Dictionary::new(&rows).expect("dictionary")
    }

    #[test]
    fn values_are_typed_by_the_dictionary() {
        let d = dict();
        assert_eq!(d.record_id_field(), "record_id");
        assert!(
            d.observation("dob", "1950-02-03")
                .expect("obs")
                .value_date
                .is_some()
        );
        assert_eq!(
            d.observation("moca", "24").expect("obs").value_num,
            Some(24.0)
        );
        let sex = d.observation("sex", "2").expect("obs");
        assert_eq!(
            (
                sex.value_num,
                sex.value_text.as_deref(),
                sex.label.as_deref()
            ),
            (Some(2.0), Some("Male"), Some("Sex"))
        );
        let cb = d.observation("cm___99", "1").expect("obs");
        assert_eq!(
            (cb.value_num, cb.label.as_deref()),
            (Some(1.0), Some("Comorbid: Other"))
        );
        // Negative and decimal codes, as REDCap names their columns.
        for (col, label) in [
            ("cm____99", "Comorbid: Unknown"),
            ("cm___1_5", "Comorbid: Borderline"),
        ] {
            let cb = d.observation(col, "0").expect("obs");
            assert_eq!(
                (cb.value_text.as_deref(), cb.label.as_deref()),
                (Some("Unchecked"), Some(label))
            );
        }
        assert_eq!(
            d.observation("bmi", "23.5").expect("obs").value_num,
            Some(23.5)
        );
        assert!(d.observation("scan", "file.dcm").is_none());
        assert!(d.observation("demographics_complete", "2").is_none());
        let bad = d.observation("moca", "n/a").expect("obs");
        assert_eq!(
            (bad.value_num, bad.value_text.as_deref()),
            (None, Some("n/a"))
        );
    }
}
