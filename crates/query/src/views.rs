//! Per-system views: typed columns over `records` and `observations`, for the questions
//! users ask of one system (which sessions, which scans, which REDCap records).
//!
//! They are plain SQL over the two tables, so they see exactly what the tables hold
//! and need no storage of their own.

pub(crate) const VIEWS: &[(&str, &str)] = &[
    (
        "xnat_sessions",
        "SELECT r.id, r.source, r.project, r.subject_key, r.subject_id,
                r.native_id AS session_id, r.title AS label, r.url, r.parent_id AS subject_record_id,
                max(CASE WHEN o.variable = 'date' THEN o.value_date END) AS date,
                max(CASE WHEN o.variable = 'modality' THEN o.value_text END) AS modality,
                max(CASE WHEN o.variable = 'xsiType' THEN o.value_text END) AS xsi_type,
                max(CASE WHEN o.variable = 'session_type' THEN o.value_text END) AS session_type,
                max(CASE WHEN o.variable = 'scanner_manufacturer' THEN o.value_text END) AS scanner_manufacturer,
                max(CASE WHEN o.variable = 'scanner_model' THEN o.value_text END) AS scanner_model,
                max(CASE WHEN o.variable = 'field_strength' THEN o.value_num END) AS field_strength_t,
                max(CASE WHEN o.variable = 'tracer_name' THEN o.value_text END) AS tracer,
                max(CASE WHEN o.variable = 'weight' THEN o.value_num END) AS weight_kg,
                r.created_at, r.modified_at
         FROM records r LEFT JOIN observations o ON o.record_id = r.id
         WHERE r.system = 'xnat' AND r.kind = 'session'
         GROUP BY r.id, r.source, r.project, r.subject_key, r.subject_id, r.native_id, r.title,
                  r.url, r.parent_id, r.created_at, r.modified_at",
    ),
    (
        "xnat_scans",
        "SELECT r.id, r.source, r.project, r.subject_key, r.subject_id,
                r.parent_id AS session_record_id,
                split_part(r.native_id, '/', 1) AS session_id,
                split_part(r.native_id, '/', 2) AS scan_id,
                max(CASE WHEN o.variable = 'type' THEN o.value_text END) AS scan_type,
                max(CASE WHEN o.variable = 'series_description' THEN o.value_text END) AS series_description,
                max(CASE WHEN o.variable = 'quality' THEN o.value_text END) AS quality,
                max(CASE WHEN o.variable = 'frames' THEN o.value_num END) AS frames,
                max(CASE WHEN o.variable = 'note' THEN o.value_text END) AS note,
                r.url
         FROM records r LEFT JOIN observations o ON o.record_id = r.id
         WHERE r.system = 'xnat' AND r.kind = 'scan'
         GROUP BY r.id, r.source, r.project, r.subject_key, r.subject_id, r.parent_id,
                  r.native_id, r.url",
    ),
    (
        "redcap_records",
        "SELECT r.id, r.source, r.project, r.native_id AS record, r.subject_key, r.subject_id,
                count(DISTINCT o.event) AS events,
                max(o.instance) AS max_instance,
                count(o.variable) AS n_values,
                count(o.value_num) AS n_numeric,
                min(o.value_date) AS first_date,
                max(o.value_date) AS last_date,
                r.url
         FROM records r LEFT JOIN observations o ON o.record_id = r.id
         WHERE r.system = 'redcap' AND r.kind = 'record'
         GROUP BY r.id, r.source, r.project, r.native_id, r.subject_key, r.subject_id, r.url",
    ),
];
