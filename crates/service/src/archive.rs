//! Archive packages of one dataset: BagIt (RFC 8493) bags an archive centre accepts,
//! its records, observations and subject links as UTF-8 CSV and as Parquet, its
//! DataCite and Dublin Core metadata, a README describing every file and column, and
//! SHA-256 manifests; split into numbered parts of at most a given size, each a
//! complete bag that validates on its own.
//!
//! Rows are read within a scope without sensitive access unless the caller asks for
//! them (and may see them), so a sensitive value never reaches a part it was not asked
//! into; keyed hashes of `hashed` variables are left out as well. A part's rows are
//! held in memory until it is written, so memory is bounded by the part size.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use serde::Serialize;

use crate::catalogue::{self, Dataset};
use crate::{Action, ErrorCode, Principal, QueryControl, Result, Scope, Service, ServiceError};

/// How to archive.
#[derive(Debug, Clone, Default)]
pub struct ArchiveOptions {
    /// Largest part in bytes; `None`: `[catalogue] archive_part_size`, else 1 GiB.
    pub part_size: Option<u64>,
    /// Put sensitive values in the package (the caller must see them).
    pub include_sensitive: bool,
}

/// One written part.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ArchivePart {
    /// Its folder.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Bytes of all its files, tag files included.
    pub bytes: u64,
    /// Records in it.
    pub records: u64,
    /// Observations in it.
    pub observations: u64,
    /// Subject links in it.
    pub links: u64,
}

/// What `archive` wrote.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ArchiveReport {
    /// The dataset.
    pub dataset_id: String,
    /// Its parts, in order.
    pub parts: Vec<ArchivePart>,
    /// Whether sensitive values were included.
    pub sensitive_included: bool,
    /// Variables left out as sensitive.
    pub sensitive_left_out: Vec<String>,
    /// Whether DataCite XML is in the package (a dataset lacking a mandatory property
    /// has Dublin Core only).
    pub datacite: bool,
}

/// Room kept in each part for tag files, metadata and the README.
const TAG_ROOM: u64 = 64 << 10;
/// Bytes the tag files written last (`bagit.txt`, `bag-info.txt`,
/// `tagmanifest-sha256.txt`) take at most.
const TAG_FILES: u64 = 8 << 10;
/// Parts are at least this large: smaller would not hold the metadata.
const MIN_PART: u64 = 2 * TAG_ROOM;

/// Rows of one part, as they arrive.
#[derive(Default)]
struct PartRows {
    records: Vec<RecordBatch>,
    observations: Vec<RecordBatch>,
    /// Bytes their CSV takes, measured.
    csv_bytes: u64,
}

impl PartRows {
    fn n_records(&self) -> usize {
        self.records.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A run of records and their observations, as read.
struct Chunk {
    records: RecordBatch,
    observations: RecordBatch,
}

impl Service {
    /// This service, or the same principal without sensitive values: what an archive
    /// or an export reads, as its `include_sensitive` says.
    pub(crate) fn sensitive_reader(&self, include_sensitive: bool) -> Service {
        if include_sensitive {
            return self.clone();
        }
        let p = self.principal();
        self.acting_as(Principal {
            name: p.name.clone(),
            scope: Scope {
                sensitive: false,
                ..p.scope.clone()
            },
            limits: p.limits,
        })
    }

    /// Writes dataset `id` as BagIt parts under `out` (created; an existing non-empty
    /// folder is refused, nothing is overwritten).
    pub async fn archive(
        &self,
        id: &str,
        out: &Path,
        options: ArchiveOptions,
        control: &QueryControl,
    ) -> Result<ArchiveReport> {
        self.require(Action::Sql)?;
        if options.include_sensitive && !self.principal().scope.sensitive {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "this token may not see sensitive values, so it cannot archive them",
            ));
        }
        let part_size = match options.part_size {
            Some(s) => s,
            None => self.config().map_or(1 << 30, |c| c.catalogue.part_size()),
        };
        if part_size < MIN_PART {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "a part of {part_size} bytes cannot hold a bag's metadata; give at least {}K",
                    MIN_PART >> 10
                ),
            ));
        }
        let (dataset, parent) = self.dataset(id, control).await?;
        if let Ok(mut entries) = std::fs::read_dir(out)
            && entries.next().is_some()
        {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "{} is not empty; archive into a new folder (crossdex never overwrites files it did not create)",
                    out.display()
                ),
            ));
        }
        let reader = self.sensitive_reader(options.include_sensitive);
        let engine = reader.engine()?;
        let idp = [("id", id)];
        // The names of the variables the caller sees, to say which are left out: the
        // reader lacks the sensitive ones, or sees them as keyed hashes (left out too).
        let variables: Vec<VariableRow> = crate::rows(
            &*self.engine()?,
            "SELECT DISTINCT o.source, o.variable FROM dataset_records m
             JOIN observations o ON o.record_id = m.record_id WHERE m.dataset_id = $id",
            &idp,
        )
        .await?;
        let sensitive = &self.inner.settings.sensitive;
        let mut left_out: Vec<String> = if options.include_sensitive {
            Vec::new()
        } else {
            variables
                .iter()
                .filter(|v| sensitive.is_sensitive(&v.source, &v.variable))
                .map(|v| v.variable.clone())
                .collect()
        };
        left_out.sort();
        left_out.dedup();
        let excluded = if left_out.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = left_out
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect();
            format!(" AND o.variable NOT IN ({})", list.join(", "))
        };
        let params = crate::text_params(&idp);
        let mut records = engine
            .sql_stream(
                "SELECT r.* FROM dataset_records m JOIN records r ON r.id = m.record_id
                 WHERE m.dataset_id = $id ORDER BY r.id",
                params.clone(),
            )
            .await?;
        let mut observations = engine
            .sql_stream(
                &format!(
                    "SELECT o.* FROM dataset_records m JOIN observations o ON o.record_id = m.record_id
                     WHERE m.dataset_id = $id{excluded} ORDER BY o.record_id, o.variable, o.event, o.instance"
                ),
                params,
            )
            .await?;
        let links = engine
            .sql(
                "SELECT subject_id, source, subject_key, matched, rule, confidence
                 FROM subject_links WHERE source = $source ORDER BY subject_key",
                crate::text_params(&[("source", &dataset.source)]),
            )
            .await?;
        let links = concat(links.schema.clone(), &links.batches)?;

        let mut writer = BagWriter {
            out: out.to_owned(),
            slug: dataset.id.replace([':', '/', '\\'], "_"),
            dataset: &dataset,
            parent: parent.as_ref(),
            part_size,
            links,
            parts: Vec::new(),
            current: PartRows::default(),
            records_schema: records.schema.clone(),
            observations_schema: observations.schema.clone(),
            sensitive_included: options.include_sensitive,
            left_out: left_out.clone(),
        };
        // Observations come in record order; each records batch takes those of its ids.
        let mut pending: Option<RecordBatch> = None;
        while let Some(batch) = records.next().await {
            let batch = batch.map_err(|e| ServiceError::internal("reading the records", e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            let last = string_at(&batch, "id", batch.num_rows() - 1)?;
            let mut taken = Vec::new();
            loop {
                let b = match pending.take() {
                    Some(b) => b,
                    None => match observations.next().await {
                        Some(b) => {
                            b.map_err(|e| ServiceError::internal("reading the observations", e))?
                        }
                        None => break,
                    },
                };
                let ids = column_str(&b, "record_id")?;
                let n = (0..b.num_rows())
                    .take_while(|i| ids.value(*i) <= last.as_str())
                    .count();
                if n > 0 {
                    taken.push(b.slice(0, n));
                }
                if n < b.num_rows() {
                    pending = Some(b.slice(n, b.num_rows() - n));
                    break;
                }
            }
            let observations_batch = concat(writer.observations_schema.clone(), &taken)?;
            writer.push(Chunk {
                records: batch,
                observations: observations_batch,
            })?;
            if control.cancel.is_cancelled() {
                return Err(ServiceError::new(
                    ErrorCode::Cancelled,
                    "archiving was cancelled",
                ));
            }
        }
        writer.finish()?;
        Ok(ArchiveReport {
            dataset_id: dataset.id.clone(),
            datacite: dataset.is_complete(),
            parts: writer.parts,
            sensitive_included: options.include_sensitive,
            sensitive_left_out: left_out,
        })
    }
}

#[derive(serde::Deserialize)]
struct VariableRow {
    source: String,
    variable: String,
}

fn concat(schema: SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    arrow::compute::concat_batches(&schema, batches)
        .map_err(|e| ServiceError::internal("gathering rows", e))
}

fn column_str<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a arrow::array::StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| ServiceError::internal("reading rows", format!("no text column {name}")))
}

fn string_at(batch: &RecordBatch, name: &str, i: usize) -> Result<String> {
    Ok(column_str(batch, name)?.value(i).to_owned())
}

/// CSV of `batch` with a header line: RFC 3339 times, UTF-8.
fn csv_bytes(batches: &[RecordBatch], schema: &SchemaRef) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.fZ".to_owned())
            .build(&mut buf);
        if batches.is_empty() {
            w.write(&RecordBatch::new_empty(schema.clone()))
                .map_err(|e| ServiceError::internal("writing CSV", e))?;
        }
        for b in batches {
            w.write(b)
                .map_err(|e| ServiceError::internal("writing CSV", e))?;
        }
    }
    if buf.is_empty() {
        // No rows: the header alone.
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        buf = format!("{}\n", names.join(",")).into_bytes();
    }
    Ok(buf)
}

fn parquet_bytes(batches: &[RecordBatch], schema: &SchemaRef) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), None)
        .map_err(|e| ServiceError::internal("writing Parquet", e))?;
    for b in batches {
        w.write(b)
            .map_err(|e| ServiceError::internal("writing Parquet", e))?;
    }
    w.close()
        .map_err(|e| ServiceError::internal("writing Parquet", e))?;
    Ok(buf)
}

struct BagWriter<'a> {
    out: PathBuf,
    slug: String,
    dataset: &'a Dataset,
    parent: Option<&'a Dataset>,
    part_size: u64,
    links: RecordBatch,
    parts: Vec<ArchivePart>,
    current: PartRows,
    records_schema: SchemaRef,
    observations_schema: SchemaRef,
    sensitive_included: bool,
    left_out: Vec<String>,
}

impl BagWriter<'_> {
    /// Room for rows in a part: the CSV and the Parquet of the same rows, the latter
    /// counted as large as the former until measured.
    fn budget(&self) -> u64 {
        (self.part_size - TAG_ROOM) / 2
    }

    fn push(&mut self, chunk: Chunk) -> Result<()> {
        let size = (csv_bytes(std::slice::from_ref(&chunk.records), &self.records_schema)?.len()
            + csv_bytes(
                std::slice::from_ref(&chunk.observations),
                &self.observations_schema,
            )?
            .len()) as u64;
        if self.current.csv_bytes + size <= self.budget() {
            self.current.csv_bytes += size;
            self.current.records.push(chunk.records);
            self.current.observations.push(chunk.observations);
            return Ok(());
        }
        if chunk.records.num_rows() > 1 {
            let (a, b) = split(chunk)?;
            self.push(a)?;
            return self.push(b);
        }
        if self.current.n_records() == 0 {
            let id = string_at(&chunk.records, "id", 0)?;
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "record {id} and its observations take about {size} bytes of CSV alone, more than a part of {} bytes holds; give a larger part size",
                    self.part_size
                ),
            ));
        }
        self.close()?;
        self.push(chunk)
    }

    /// Writes the current part; if its files outgrow the part size after all, its last
    /// rows move to the next part.
    fn close(&mut self) -> Result<()> {
        let mut rows = std::mem::take(&mut self.current);
        loop {
            let n = self.parts.len() + 1;
            let dir = self.out.join(format!("{}.part-{n:03}", self.slug));
            let part = self.write_part(&dir, &rows)?;
            // The tag files come once every part is written: room is kept for them.
            let fits = part.bytes + TAG_FILES <= self.part_size;
            if fits || rows.records.len() <= 1 && rows.n_records() <= 1 {
                if !fits {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidParameter,
                        format!(
                            "one record takes more than a part of {} bytes; give a larger part size",
                            self.part_size
                        ),
                    ));
                }
                self.parts.push(part);
                return Ok(());
            }
            // Too large: remove what was written (crossdex's own files) and retry with
            // the last chunk split off for the next part.
            std::fs::remove_dir_all(&dir)
                .map_err(|e| ServiceError::internal("rewriting an archive part", e))?;
            let records = rows
                .records
                .pop()
                .unwrap_or_else(|| RecordBatch::new_empty(self.records_schema.clone()));
            let observations = rows
                .observations
                .pop()
                .unwrap_or_else(|| RecordBatch::new_empty(self.observations_schema.clone()));
            let chunk = Chunk {
                records,
                observations,
            };
            let (keep, carry) = if chunk.records.num_rows() > 1 {
                split(chunk)?
            } else {
                (
                    Chunk {
                        records: RecordBatch::new_empty(self.records_schema.clone()),
                        observations: RecordBatch::new_empty(self.observations_schema.clone()),
                    },
                    chunk,
                )
            };
            if keep.records.num_rows() > 0 {
                rows.records.push(keep.records);
                rows.observations.push(keep.observations);
            }
            self.current.records.insert(0, carry.records);
            self.current.observations.insert(0, carry.observations);
            self.current.csv_bytes = 0;
        }
    }

    fn finish(&mut self) -> Result<()> {
        if self.current.n_records() > 0 || self.parts.is_empty() {
            self.close()?;
        }
        // A part closed by `close` may have carried rows over.
        while self.current.n_records() > 0 {
            self.close()?;
        }
        // Bag-Count needs the number of parts: the tag files come last.
        let total = self.parts.len();
        for (i, part) in self.parts.iter_mut().enumerate() {
            let bytes = write_tags(
                &part.path,
                self.dataset,
                i + 1,
                total,
                self.sensitive_included,
                &self.left_out,
            )?;
            part.bytes += bytes;
        }
        Ok(())
    }

    /// The payload and payload manifest of one part; its bytes so far.
    fn write_part(&self, dir: &Path, rows: &PartRows) -> Result<ArchivePart> {
        let data = dir.join("data");
        let records_batch = concat(self.records_schema.clone(), &rows.records)?;
        let observations_batch = concat(self.observations_schema.clone(), &rows.observations)?;
        let links = self.links_of(&records_batch)?;
        let links_schema = self.links.schema();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, batch, schema) in [
            ("records", &records_batch, &self.records_schema),
            (
                "observations",
                &observations_batch,
                &self.observations_schema,
            ),
            ("subject_links", &links, &links_schema),
        ] {
            let batches = std::slice::from_ref(batch);
            files.push((format!("tables/{name}.csv"), csv_bytes(batches, schema)?));
            files.push((
                format!("tables/{name}.parquet"),
                parquet_bytes(batches, schema)?,
            ));
        }
        files.push((
            "metadata/dublin-core.xml".into(),
            catalogue::dublin_core_xml(self.dataset).into_bytes(),
        ));
        if let Ok(xml) = catalogue::datacite_xml(self.dataset, self.parent) {
            files.push(("metadata/datacite.xml".into(), xml.into_bytes()));
        }
        if let Ok(json) = catalogue::datacite_json(self.dataset, self.parent) {
            files.push((
                "metadata/datacite.json".into(),
                serde_json::to_vec_pretty(&json).unwrap_or_default(),
            ));
        }
        files.push((
            "metadata/dataset.json".into(),
            serde_json::to_vec_pretty(self.dataset).unwrap_or_default(),
        ));
        files.push((
            "README.txt".into(),
            readme(
                self.dataset,
                &files,
                &[
                    ("records", &self.records_schema),
                    ("observations", &self.observations_schema),
                    ("subject_links", &links_schema),
                ],
            )
            .into_bytes(),
        ));
        std::fs::create_dir_all(&data)
            .map_err(|e| ServiceError::internal("creating an archive part", e))?;
        let mut manifest = String::new();
        let mut bytes = 0u64;
        for (name, content) in &files {
            let path = data.join(name);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)
                    .map_err(|e| ServiceError::internal("creating an archive part", e))?;
            }
            write_new(&path, content)?;
            bytes += content.len() as u64;
            let _ = writeln!(manifest, "{}  data/{name}", sha256(content));
        }
        write_new(&dir.join("manifest-sha256.txt"), manifest.as_bytes())?;
        bytes += manifest.len() as u64;
        Ok(ArchivePart {
            path: dir.to_owned(),
            bytes,
            records: records_batch.num_rows() as u64,
            observations: observations_batch.num_rows() as u64,
            links: links.num_rows() as u64,
        })
    }

    /// The links of the dataset's source whose key the part's records carry.
    fn links_of(&self, records: &RecordBatch) -> Result<RecordBatch> {
        let keys = column_str(records, "subject_key")?;
        let titles = column_str(records, "title")?;
        let carried: HashSet<&str> = (0..records.num_rows())
            .map(|i| {
                if keys.is_null(i) {
                    titles.value(i)
                } else {
                    keys.value(i)
                }
            })
            .collect();
        let matched = column_str(&self.links, "matched")?;
        let take: Vec<u32> = (0..self.links.num_rows())
            .filter(|i| carried.contains(matched.value(*i)))
            .map(|i| i as u32)
            .collect();
        let indices = UInt32Array::from(take);
        let columns = self
            .links
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::internal("selecting links", e))?;
        RecordBatch::try_new(self.links.schema(), columns)
            .map_err(|e| ServiceError::internal("selecting links", e))
    }
}

/// Splits a chunk in two halves of its records, each with its observations.
fn split(chunk: Chunk) -> Result<(Chunk, Chunk)> {
    let n = chunk.records.num_rows();
    let half = n / 2;
    let boundary = string_at(&chunk.records, "id", half)?;
    let ids = column_str(&chunk.observations, "record_id")?;
    let m = (0..chunk.observations.num_rows())
        .take_while(|i| ids.value(*i) < boundary.as_str())
        .count();
    let o = &chunk.observations;
    Ok((
        Chunk {
            records: chunk.records.slice(0, half),
            observations: o.slice(0, m),
        },
        Chunk {
            records: chunk.records.slice(half, n - half),
            observations: o.slice(m, o.num_rows() - m),
        },
    ))
}

/// Creates `path` with `content`; an existing file is an error, never overwritten.
fn write_new(path: &Path, content: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            ServiceError::new(
                ErrorCode::InvalidParameter,
                format!("cannot create {}: {e}", path.display()),
            )
        })?;
    f.write_all(content)
        .and_then(|()| f.sync_all())
        .map_err(|e| ServiceError::internal("writing an archive file", e))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// `bagit.txt`, `bag-info.txt` and `tagmanifest-sha256.txt` of a written part; their
/// bytes.
fn write_tags(
    dir: &Path,
    d: &Dataset,
    n: usize,
    total: usize,
    sensitive_included: bool,
    left_out: &[String],
) -> Result<u64> {
    let (oxum_bytes, oxum_files) = payload_oxum(&dir.join("data"))?;
    let bagit = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n".to_owned();
    let mut info = String::new();
    let mut field = |k: &str, v: &str| {
        // One line per field, of bounded length: the tag files fit the room kept.
        let v: String = v
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(500)
            .collect();
        let _ = writeln!(info, "{k}: {v}");
    };
    if let Some(p) = &d.publisher {
        field("Source-Organization", p);
    }
    field("External-Identifier", &d.id);
    if let Some(id) = &d.identifier {
        field("External-Identifier", &format!("{} {}", id.kind, id.value));
    }
    field("External-Description", &d.title);
    field(
        "Bagging-Date",
        &chrono::Utc::now().format("%Y-%m-%d").to_string(),
    );
    field("Bag-Group-Identifier", &d.id);
    field("Bag-Count", &format!("{n} of {total}"));
    field("Payload-Oxum", &format!("{oxum_bytes}.{oxum_files}"));
    field(
        "Bag-Software-Agent",
        concat!("crossdex ", env!("CARGO_PKG_VERSION")),
    );
    let sensitive = if sensitive_included {
        "included at the archivist's request (crossdex archive --include-sensitive)".to_owned()
    } else if left_out.is_empty() {
        "excluded (none in this dataset)".to_owned()
    } else {
        format!("excluded: {}", left_out.join(", "))
    };
    field("Sensitive-Fields", &sensitive);
    let mut tagmanifest = String::new();
    let mut bytes = 0u64;
    for (name, content) in [("bagit.txt", bagit), ("bag-info.txt", info)] {
        write_new(&dir.join(name), content.as_bytes())?;
        let _ = writeln!(tagmanifest, "{}  {name}", sha256(content.as_bytes()));
        bytes += content.len() as u64;
    }
    let manifest = std::fs::read(dir.join("manifest-sha256.txt"))
        .map_err(|e| ServiceError::internal("reading the manifest", e))?;
    let _ = writeln!(tagmanifest, "{}  manifest-sha256.txt", sha256(&manifest));
    write_new(&dir.join("tagmanifest-sha256.txt"), tagmanifest.as_bytes())?;
    Ok(bytes + tagmanifest.len() as u64)
}

/// Bytes and files of the payload.
fn payload_oxum(dir: &Path) -> Result<(u64, u64)> {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| ServiceError::internal("reading a part", e))?;
        for e in entries.flatten() {
            let meta = e
                .metadata()
                .map_err(|e| ServiceError::internal("reading a part", e))?;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    Ok((bytes, files))
}

/// What each column of the archived tables means.
const COLUMNS: &[(&str, &str)] = &[
    (
        "id",
        "stable global id of the record, `source:kind:native_id`",
    ),
    ("source", "the configured source it came from"),
    (
        "system",
        "the source's system: xnat, redcap, omero, transmart, elabftw, files",
    ),
    (
        "kind",
        "what the record is in its source: project, subject, session, scan, record, image, ...",
    ),
    ("native_id", "its id inside the source"),
    ("parent_id", "global id of the record it belongs to"),
    ("project", "project or study, as the source names it"),
    (
        "subject_key",
        "the subject identifier as this source spells it",
    ),
    (
        "subject_id",
        "the resolved subject across sources (see subject_links)",
    ),
    ("title", "short title"),
    ("description", "free text"),
    ("url", "link into the source's own user interface"),
    (
        "created_at",
        "creation time reported by the source (UTC, RFC 3339)",
    ),
    (
        "modified_at",
        "last change reported by the source (UTC, RFC 3339)",
    ),
    ("attributes", "JSON object of source-specific attributes"),
    (
        "synced_at",
        "when crossdex last read the record (UTC, RFC 3339)",
    ),
    (
        "record_id",
        "the record (`records.id`) the value belongs to",
    ),
    ("variable", "field, concept or key name"),
    ("label", "the variable's human label"),
    ("value_text", "the value as the source wrote it"),
    ("value_num", "the value as a number, when it is one"),
    (
        "value_date",
        "the value as a date, when it is one (UTC, RFC 3339)",
    ),
    ("unit", "unit of a numeric value"),
    ("event", "visit, event or session of the value"),
    ("instance", "repeat instance"),
    ("observed_at", "when the value was observed (UTC, RFC 3339)"),
    (
        "matched",
        "what the source's records carry for the subject: the key, or a title naming it",
    ),
    ("rule", "the linking rule that made the link"),
    (
        "confidence",
        "1 for a rule's link, 0 for a reported conflict",
    ),
];

fn readme(d: &Dataset, files: &[(String, Vec<u8>)], tables: &[(&str, &SchemaRef)]) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "{}\n{}\n",
        d.title,
        "=".repeat(d.title.chars().count().max(3))
    );
    let _ = writeln!(
        r,
        "Dataset {} of source `{}` ({}), archived by crossdex.",
        d.id,
        d.source,
        catalogue::system_name(&d.system)
    );
    if let Some(desc) = &d.description {
        let _ = writeln!(r, "\n{desc}");
    }
    let _ = writeln!(
        r,
        "\nThis package is a BagIt bag (RFC 8493): `manifest-sha256.txt` holds the SHA-256 of\n\
         every file under `data/`, `tagmanifest-sha256.txt` those of the tag files, and\n\
         `bag-info.txt` says which part of how many this is (`Bag-Count`) and whether\n\
         sensitive fields were excluded. Every text file is UTF-8; CSV files have a header\n\
         row, comma separators and RFC 4180 quoting; Parquet files hold the same rows with\n\
         their types. Times are UTC (RFC 3339)."
    );
    let _ = writeln!(r, "\nFiles\n-----\n");
    let mut names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    names.push("README.txt");
    for name in names {
        let what = match name {
            n if n.ends_with("records.csv") || n.ends_with("records.parquet") => {
                "one row per record of the dataset (the dataset's own record included)"
            }
            n if n.ends_with("observations.csv") || n.ends_with("observations.parquet") => {
                "typed values of those records, one per row (long form)"
            }
            n if n.ends_with("subject_links.csv") || n.ends_with("subject_links.parquet") => {
                "how the subjects of those records were linked to subjects across sources"
            }
            "metadata/datacite.xml" => "DataCite metadata (kernel 4, XML)",
            "metadata/datacite.json" => {
                "DataCite metadata (JSON, as DataCite's REST API writes it)"
            }
            "metadata/dublin-core.xml" => "Dublin Core metadata (oai_dc)",
            "metadata/dataset.json" => "the catalogue entry, with counts of the whole dataset",
            "README.txt" => "this description",
            _ => "",
        };
        let _ = writeln!(r, "- data/{name}: {what}");
    }
    for (table, schema) in tables {
        let _ = writeln!(
            r,
            "\nColumns of {table}\n-----------{}\n",
            "-".repeat(table.len())
        );
        for f in schema.fields() {
            let meaning = COLUMNS
                .iter()
                .find(|(c, _)| c == f.name())
                .map_or("", |(_, m)| *m);
            let _ = writeln!(r, "- {} ({}): {meaning}", f.name(), f.data_type());
        }
    }
    r
}
