//! Per-system views: typed columns over `records` and `observations`, for the questions
//! users ask of one system (which sessions, which scans, which REDCap records).
//!
//! They are plain SQL over the two tables, so they see exactly what the tables hold
//! and need no storage of their own.

use crossdex_store::{OBSERVATIONS_SCHEMA, RECORDS_SCHEMA};

/// `records` and `observations` as the stored rows with `subject_id` resolved by
/// `subject_of` (see `subject_of.rs`), and `subjects`: they come first, the per-system
/// views use them.
///
/// `demographics` are the columns of `subject_links` the reader sees (`sex`,
/// `birth_year`), each with whether it is a keyed hash rather than the value.
pub(crate) fn core_views(demographics: &[(&str, bool)]) -> Vec<(&'static str, String)> {
    let mut outer = String::new();
    let mut inner = String::new();
    for (column, clear) in [
        ("sex", "lower(sex)"),
        ("birth_year", "CAST(CAST(birth_year AS DOUBLE) AS BIGINT)"),
    ] {
        let Some((_, hashed)) = demographics.iter().find(|(d, _)| *d == column) else {
            continue;
        };
        // A keyed hash is kept as it is: it is text, and only equal values matter.
        let value = if *hashed { column } else { clear };
        outer.push_str(&format!(" l.{column},"));
        inner.push_str(&format!(
            " min({value}) FILTER (WHERE confidence > 0) AS {column},"
        ));
    }
    let resolved = |schema: &arrow::datatypes::Schema, table: &str| {
        // Records of sources linked by title (a notebook naming subjects only in titles)
        // carry no subject key; their title is the key the link was made on.
        let key = if table == "records" {
            "coalesce(t.subject_key, t.title)"
        } else {
            "t.subject_key"
        };
        let cols: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                // The stored column is never read: a column of the same name under the
                // resolved one is what DataFusion's filter pushdown confused.
                "subject_id" => format!("subject_of(t.source, {key}) AS subject_id"),
                name => format!("t.\"{name}\""),
            })
            .collect();
        format!("SELECT {} FROM internal.{table} t", cols.join(", "))
    };
    vec![
        ("records", resolved(&RECORDS_SCHEMA, "records")),
        (
            "observations",
            resolved(&OBSERVATIONS_SCHEMA, "observations"),
        ),
        (
            "subjects",
            format!(
                "SELECT l.subject_id, replace(l.subject_id, 'subj:', '') AS label,
                    l.sources, l.n_sources, coalesce(r.n, 0) AS n_records,{outer}
                    l.conflicts
             FROM (SELECT subject_id,
                          array_sort(array_agg(DISTINCT source) FILTER (WHERE confidence > 0)) AS sources,
                          count(DISTINCT source) FILTER (WHERE confidence > 0) AS n_sources,{inner}
                          bool_or(confidence = 0) AS conflicts
                   FROM subject_links GROUP BY subject_id) l
             LEFT JOIN (SELECT subject_id AS linked_subject, count(*) AS n FROM records
                        WHERE subject_id IS NOT NULL GROUP BY subject_id) r
               ON r.linked_subject = l.subject_id"
            ),
        ),
    ]
}

/// `visits`: each imaging session tied to the clinical visits of its subject within the
/// window; a session without a visit, or a visit without a session, has the other side
/// empty.
pub(crate) fn visits_view(settings: &crate::VisitSettings) -> String {
    let vars: Vec<String> = settings
        .date_variables
        .iter()
        .map(|v| crate::sql_literal(v))
        .collect();
    let vars = if vars.is_empty() {
        "''".to_owned()
    } else {
        vars.join(", ")
    };
    format!(
        "SELECT coalesce(s.subject_id, v.subject_id) AS subject_id,
                v.source AS clinical_source, v.event AS visit, v.value_date AS visit_date,
                s.id AS session_record_id, s.label AS session, s.modality, s.date AS session_date,
                CAST(round(abs(date_part('epoch', s.date) - date_part('epoch', v.value_date)) / 86400) AS BIGINT)
                  AS days_apart
         FROM (SELECT subject_id, id, label, modality, date FROM xnat_sessions
               WHERE subject_id IS NOT NULL AND date IS NOT NULL) s
         FULL OUTER JOIN
              (SELECT subject_id, source, event, value_date FROM observations
               WHERE variable IN ({vars}) AND subject_id IS NOT NULL AND value_date IS NOT NULL) v
           ON s.subject_id = v.subject_id
          AND abs(date_part('epoch', s.date) - date_part('epoch', v.value_date)) <= {} * 86400",
        settings.window_days
    )
}

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
    (
        "omero_images",
        "SELECT r.id, r.source, r.project, r.subject_key, r.subject_id,
                r.native_id AS image_id, r.title AS name, r.parent_id AS dataset_record_id,
                max(CASE WHEN o.variable = 'acquisition_date' THEN o.value_date END) AS acquired_at,
                max(CASE WHEN o.variable = 'size_x' THEN o.value_num END) AS size_x,
                max(CASE WHEN o.variable = 'size_y' THEN o.value_num END) AS size_y,
                max(CASE WHEN o.variable = 'size_z' THEN o.value_num END) AS size_z,
                max(CASE WHEN o.variable = 'size_c' THEN o.value_num END) AS size_c,
                max(CASE WHEN o.variable = 'size_t' THEN o.value_num END) AS size_t,
                max(CASE WHEN o.variable = 'pixel_size_x' THEN o.value_num END) AS pixel_size_x,
                max(CASE WHEN o.variable = 'pixel_size_z' THEN o.value_num END) AS pixel_size_z,
                max(CASE WHEN o.variable = 'pixel_size_x' THEN o.unit END) AS pixel_unit,
                max(CASE WHEN o.variable = 'pixel_type' THEN o.value_text END) AS pixel_type,
                string_agg(CASE WHEN o.variable = 'channel' THEN o.value_text END, ', ') AS channels,
                r.url
         FROM records r LEFT JOIN observations o ON o.record_id = r.id
         WHERE r.system = 'omero' AND r.kind = 'image'
         GROUP BY r.id, r.source, r.project, r.subject_key, r.subject_id, r.native_id, r.title,
                  r.parent_id, r.url",
    ),
    (
        "transmart_observations",
        "SELECT o.record_id, o.source, r.project AS study, o.subject_key, o.subject_id,
                o.variable AS concept_code, o.label AS concept, o.value_num, o.value_text,
                o.unit, o.event AS visit, o.observed_at
         FROM observations o JOIN records r ON r.id = o.record_id
         WHERE o.system = 'transmart' AND r.kind = 'observation set'",
    ),
    (
        "elabftw_experiments",
        "SELECT r.id, r.source, r.native_id AS experiment_id, r.title, r.project AS category,
                max(CASE WHEN o.variable = 'status' THEN o.value_text END) AS status,
                max(CASE WHEN o.variable = 'author' THEN o.value_text END) AS author,
                max(CASE WHEN o.variable = 'date' THEN o.value_date END) AS date,
                string_agg(CASE WHEN o.variable = 'tag' THEN o.value_text END, ', ') AS tags,
                r.created_at, r.modified_at, r.url
         FROM records r LEFT JOIN observations o ON o.record_id = r.id
         WHERE r.system = 'elabftw' AND r.kind = 'experiment'
         GROUP BY r.id, r.source, r.native_id, r.title, r.project, r.created_at, r.modified_at, r.url",
    ),
    (
        "elabftw_items",
        "SELECT r.id, r.source, r.native_id AS item_id, r.title, r.project AS category,
                r.subject_key, r.subject_id,
                max(CASE WHEN o.variable = 'author' THEN o.value_text END) AS author,
                max(CASE WHEN o.variable = 'date' THEN o.value_date END) AS date,
                string_agg(CASE WHEN o.variable = 'tag' THEN o.value_text END, ', ') AS tags,
                r.created_at, r.modified_at, r.url
         FROM records r LEFT JOIN observations o ON o.record_id = r.id
         WHERE r.system = 'elabftw' AND r.kind = 'item'
         GROUP BY r.id, r.source, r.native_id, r.title, r.project, r.subject_key, r.subject_id,
                  r.created_at, r.modified_at, r.url",
    ),
    // Which records each dataset holds. An XNAT project or a tranSMART study holds its
    // project's records, a REDCap project every record of its source, an OMERO project
    // its datasets and their images, an OMERO dataset its images, an eLabFTW experiment
    // itself, a `files` source all its rows. Each branch is an equality join, so none
    // degenerates into a nested loop over the records.
    (
        "dataset_records",
        "SELECT d.id AS dataset_id, r.id AS record_id
         FROM internal.records d JOIN internal.records r ON r.source = d.source AND r.project = d.native_id
         WHERE (d.system = 'xnat' AND d.kind = 'project')
            OR (d.system = 'transmart' AND d.kind = 'study')
         UNION ALL
         SELECT d.id, r.id
         FROM internal.records d JOIN internal.records r ON r.source = d.source
         WHERE d.system = 'redcap' AND d.kind = 'project'
         UNION ALL
         SELECT id, id AS record_id FROM internal.records
         WHERE (system = 'omero' AND kind IN ('project', 'dataset'))
            OR (system = 'elabftw' AND kind = 'experiment')
         UNION ALL
         SELECT d.id, r.id
         FROM internal.records d JOIN internal.records r ON r.source = d.source AND r.parent_id = d.id
         WHERE d.system = 'omero' AND d.kind IN ('project', 'dataset')
         UNION ALL
         SELECT ds.parent_id, r.id
         FROM internal.records ds JOIN internal.records r ON r.source = ds.source AND r.parent_id = ds.id
         WHERE ds.system = 'omero' AND ds.kind = 'dataset' AND ds.parent_id IS NOT NULL
         UNION ALL
         SELECT source || ':source:' || source, id FROM internal.records WHERE system = 'files'",
    ),
    // One row per dataset-level entity, with what its source says of it and counts of
    // what it holds. Steward-supplied metadata (creators, licence, DOI) is the
    // configuration's, added by the catalogue of the service.
    (
        "datasets",
        "WITH d AS (
           SELECT id, source, system, kind, native_id, title, description, url,
                  parent_id, created_at, modified_at
           FROM internal.records
           WHERE (system IN ('xnat', 'redcap') AND kind = 'project')
              OR (system = 'omero' AND kind IN ('project', 'dataset'))
              OR (system = 'transmart' AND kind = 'study')
              OR (system = 'elabftw' AND kind = 'experiment')
           UNION ALL
           SELECT source || ':source:' || source AS id, source, 'files' AS system,
                  'source' AS kind, source AS native_id, source AS title,
                  CAST(NULL AS VARCHAR) AS description, CAST(NULL AS VARCHAR) AS url,
                  CAST(NULL AS VARCHAR) AS parent_id,
                  min(created_at) AS created_at, max(modified_at) AS modified_at
           FROM internal.records WHERE system = 'files' GROUP BY source
         ),
         held AS (
           SELECT m.dataset_id, count(*) AS n_records,
                  count(DISTINCT coalesce(r.subject_id, r.source || ':' || r.subject_key)) AS n_subjects,
                  count(*) FILTER (WHERE r.kind = 'session') AS n_sessions,
                  count(*) FILTER (WHERE r.kind = 'image') AS n_images,
                  max(r.modified_at) AS changed_at
           FROM dataset_records m JOIN records r ON r.id = m.record_id
           GROUP BY m.dataset_id
         ),
         measured AS (
           SELECT m.dataset_id, count(*) AS n_observations,
                  count(DISTINCT o.variable) AS n_variables,
                  array_sort(array_agg(DISTINCT o.value_text) FILTER (WHERE o.variable = 'modality')) AS modalities,
                  min(coalesce(o.observed_at, o.value_date)) AS first_observed,
                  max(coalesce(o.observed_at, o.value_date)) AS last_observed
           FROM dataset_records m JOIN observations o ON o.record_id = m.record_id
           GROUP BY m.dataset_id
         )
         SELECT d.id AS dataset_id, d.source, d.system, d.kind, d.native_id, d.title,
                d.description, d.url, d.parent_id AS parent_dataset_id, d.created_at,
                CASE WHEN h.changed_at IS NULL OR d.modified_at >= h.changed_at
                     THEN d.modified_at ELSE h.changed_at END AS modified_at,
                coalesce(h.n_records, 0) AS n_records, coalesce(h.n_subjects, 0) AS n_subjects,
                coalesce(h.n_sessions, 0) AS n_sessions, coalesce(h.n_images, 0) AS n_images,
                coalesce(o.n_observations, 0) AS n_observations,
                coalesce(o.n_variables, 0) AS n_variables,
                o.modalities, o.first_observed, o.last_observed
         FROM d LEFT JOIN held h ON h.dataset_id = d.id
                LEFT JOIN measured o ON o.dataset_id = d.id",
    ),
];
