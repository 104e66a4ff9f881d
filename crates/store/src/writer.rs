//! Writing: one writer per data directory, one sync transaction at a time.
//!
//! A transaction streams pages into new Parquet files and into uncommitted tantivy
//! segments. Commit finishes the files, then commits tantivy with the new manifest
//! as payload: that single atomic rename is the moment the sync becomes visible.
//! Until then readers see the previous state; after a crash the new files are
//! orphans that the next writer deletes.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use crossdex_model::{Checkpoint, Entity, Page, Rejection, SyncMode, is_valid_source_name};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tantivy::{IndexReader, IndexWriter, ReloadPolicy, Term};

use crate::error::{Result, StoreError};
use crate::index::{self, Fields, HashLookup};
use crate::lock::WriteLock;
use crate::manifest::{FORMAT_VERSION, Manifest, SourceState};
use crate::runs::{Counts, MAX_KEPT_REJECTIONS, RunStatus, SyncRun};
use crate::tables::{
    OBSERVATIONS_SCHEMA, ObservationsBuilder, RECORDS_SCHEMA, RecordsBuilder, SYNC_RUNS_SCHEMA,
    sync_runs_batch,
};
use crate::{DataDir, manifest_of};

/// Rows buffered before a batch goes to the Parquet writer.
const BATCH_ROWS: usize = 8192;
/// Memory given to tantivy's indexing threads, in all. It caps what a sync holds for
/// the index whatever the source's size; ingest measured no slower than with 192 MiB.
/// With the 4 threads at most, each gets 16 MiB, above tantivy's 15 MB minimum.
const INDEX_MEMORY: usize = 64 << 20;

/// The single writer of a data directory. Holds the directory's lock until dropped.
pub struct Writer {
    dir: DataDir,
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    manifest: Manifest,
    /// Observation variables kept out of the index.
    sensitive: crate::Sensitive,
    /// Its fingerprint, mixed into every content hash.
    sensitive_mark: u64,
    _lock: WriteLock,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dir", &self.dir.root)
            .field("generation", &self.manifest.generation)
            .finish()
    }
}

fn xxh128(s: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(s.as_bytes())
}

/// A hash of everything a sync stores of an entity, so an unchanged entity is
/// recognised without re-indexing it. Fields are fed with length prefixes, so values
/// cannot run into each other.
fn content_hash(e: &Entity, buf: &mut Vec<u8>) -> u64 {
    fn text(buf: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => buf.push(0),
            Some(s) => {
                buf.push(1);
                buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
        }
    }
    fn num(buf: &mut Vec<u8>, n: Option<i64>) {
        match n {
            None => buf.push(0),
            Some(n) => {
                buf.push(1);
                buf.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
    let micros = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros());
    buf.clear();
    let r = &e.record;
    for s in [&r.id, &r.source, &r.system, &r.kind, &r.native_id, &r.title] {
        text(buf, Some(s));
    }
    for s in [
        &r.parent_id,
        &r.project,
        &r.subject_key,
        &r.subject_id,
        &r.description,
        &r.url,
    ] {
        text(buf, s.as_deref());
    }
    num(buf, micros(r.created_at));
    num(buf, micros(r.modified_at));
    if !r.attributes.is_empty() {
        // Serialising a JSON map into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &r.attributes);
    }
    buf.extend_from_slice(&(e.observations.len() as u64).to_le_bytes());
    for o in &e.observations {
        text(buf, Some(&o.variable));
        for s in [&o.label, &o.value_text, &o.unit, &o.event] {
            text(buf, s.as_deref());
        }
        num(buf, o.value_num.map(|n| n.to_bits() as i64));
        num(buf, micros(o.value_date));
        num(buf, o.instance);
        num(buf, micros(o.observed_at));
    }
    xxhash_rust::xxh3::xxh3_64(buf)
}

/// Columns whose values are (nearly) unique per row: dictionary encoding only costs
/// time there before Parquet falls back to plain encoding.
const UNIQUE_COLUMNS: &[&str] = &[
    "id",
    "native_id",
    "parent_id",
    "title",
    "description",
    "url",
    "attributes",
    "record_id",
    "value_text",
];

fn writer_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024));
    for c in UNIQUE_COLUMNS {
        b = b.set_column_dictionary_enabled((*c).into(), false);
    }
    b.build()
}

fn create_parquet(path: &Path, schema: &SchemaRef) -> Result<ArrowWriter<File>> {
    let file = File::create(path).map_err(|e| StoreError::io("cannot create", path, e))?;
    ArrowWriter::try_new(file, schema.clone(), Some(writer_properties())).map_err(|source| {
        StoreError::Parquet {
            path: path.to_owned(),
            source,
        }
    })
}

/// Closes a Parquet file and flushes it to disk, so the commit that names it never
/// points at a file the kernel has not written yet.
fn close_parquet(w: ArrowWriter<File>, path: &Path) -> Result<()> {
    let file = w.into_inner().map_err(|source| StoreError::Parquet {
        path: path.to_owned(),
        source,
    })?;
    file.sync_all()
        .map_err(|e| StoreError::io("cannot flush", path, e))
}

pub(crate) fn read_parquet(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let file = File::open(path).map_err(|e| StoreError::io("cannot open", path, e))?;
    let to_err = |source| StoreError::Parquet {
        path: path.to_owned(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(to_err)?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(to_err)?;
    Ok(reader.map(|b| b.map_err(StoreError::from)))
}

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| {
            StoreError::Arrow(arrow::error::ArrowError::SchemaError(format!(
                "column `{name}` missing or not text"
            )))
        })
}

impl Writer {
    /// Opens (creating it if needed) the data directory for writing. Fails with
    /// [`StoreError::Locked`] if another process writes to it.
    pub fn open(root: impl AsRef<Path>) -> Result<Writer> {
        Self::open_for(root, "crossdex")
    }

    /// Like [`Writer::open`]; `purpose` (e.g. `crossdex serve`) is written beside the
    /// process id in the lock file, so a process that finds the directory locked can
    /// say who holds it and since when.
    pub fn open_for(root: impl AsRef<Path>, purpose: &str) -> Result<Writer> {
        let dir = DataDir::new(root.as_ref());
        // Nothing is created, not even the lock file, in a folder that is not ours or
        // holds an index of another program.
        dir.check_ours()?;
        if dir.has_index() {
            drop(dir.open_index()?);
        }
        for d in [&dir.root, &dir.index, &dir.records(), &dir.observations()] {
            fs::create_dir_all(d).map_err(|e| StoreError::io("cannot create", d, e))?;
        }
        let lock = WriteLock::acquire(&dir.root, purpose)?;
        let index = dir.open_or_create_index()?;
        dir.share_index_metadata();
        let fields = index::fields_of(&index.schema()).map_err(|e| dir.corrupt(e))?;
        // Measured on 2 cores: two indexing threads beside the caller's beat one.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get().clamp(2, 4))
            .unwrap_or(2);
        let writer = index.writer_with_num_threads(threads, INDEX_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let manifest = match manifest_of(&dir, &index)? {
            Some(m) => m,
            None => Manifest {
                format: FORMAT_VERSION,
                ..Manifest::default()
            },
        };
        let w = Writer {
            dir,
            writer,
            reader,
            fields,
            manifest,
            sensitive: crate::Sensitive::none(),
            sensitive_mark: 0,
            _lock: lock,
        };
        w.collect_garbage(None)?;
        Ok(w)
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.dir.root
    }

    /// Keeps the values of `sensitive` variables out of the full-text index from the
    /// next sync on. A record indexed under another list is indexed again the next
    /// time its source sends it (every record, with `--full`).
    pub fn set_sensitive(&mut self, sensitive: crate::Sensitive) {
        self.sensitive_mark = sensitive.fingerprint();
        self.sensitive = sensitive;
    }

    /// Room for a sync: the bytes free on the data directory's file system, and the
    /// bytes the data directory holds now. A sync writes a new generation of a source's
    /// tables and index segments beside the current and previous ones, and spools
    /// other sources' pages meanwhile: measured at about 4.6 times the final size.
    pub fn space(&self) -> Result<(u64, u64)> {
        let free = fs4::available_space(&self.dir.root)
            .map_err(|e| StoreError::io("cannot measure free space on", &self.dir.root, e))?;
        Ok((free, dir_size(&self.dir.root)))
    }

    /// The committed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Starts applying a sync of `source`. Nothing is visible until
    /// [`SyncTxn::commit`]; dropping the transaction abandons it.
    pub fn begin(
        &mut self,
        source: &str,
        system: &str,
        started_at: DateTime<Utc>,
    ) -> Result<SyncTxn<'_>> {
        if !is_valid_source_name(source) {
            return Err(StoreError::InvalidSourceName(source.to_owned()));
        }
        let generation = self.manifest.generation + 1;
        let records_rel = format!("records/{source}.{generation}.parquet");
        let observations_rel = format!("observations/{source}.{generation}.parquet");
        let records_path = self.dir.tables.join(&records_rel);
        let observations_path = self.dir.tables.join(&observations_rel);
        self.reader.reload()?;
        let lookup = HashLookup::new(&self.reader.searcher(), &self.fields)?;
        Ok(SyncTxn {
            records_out: Some(create_parquet(&records_path, &RECORDS_SCHEMA)?),
            observations_out: Some(create_parquet(&observations_path, &OBSERVATIONS_SCHEMA)?),
            w: self,
            source: source.to_owned(),
            system: system.to_owned(),
            generation,
            started_at,
            synced_at: Utc::now(),
            records_rel,
            observations_rel,
            records_path,
            observations_path,
            records: RecordsBuilder::new(),
            observations: ObservationsBuilder::new(),
            lookup,
            seen: HashSet::new(),
            deleted: HashSet::new(),
            counts: Counts::default(),
            rejections: Vec::new(),
            n_records: 0,
            n_observations: 0,
            hash_buf: Vec::with_capacity(4096),
            done: false,
        })
    }

    /// Records a failed run in `sync_runs`, changing nothing else.
    pub fn record_failure(
        &mut self,
        source: &str,
        system: &str,
        mode: SyncMode,
        started_at: DateTime<Utc>,
        error: &str,
    ) -> Result<SyncRun> {
        // Nothing is pending here: an abandoned transaction rolled the index back when
        // it was dropped, and none can be open while `self` is borrowed mutably.
        let mut manifest = self.manifest.clone();
        manifest.generation += 1;
        let run = SyncRun {
            run_id: format!("{source}-{}", manifest.generation),
            source: source.to_owned(),
            system: system.to_owned(),
            mode,
            started_at,
            finished_at: Utc::now(),
            status: RunStatus::Failed,
            counts: Counts::default(),
            error: Some(error.to_owned()),
            rejections: Vec::new(),
        };
        self.commit_manifest(manifest, &run)?;
        Ok(run)
    }

    /// Removes everything held of `source` (its records, observations and checkpoint),
    /// in one commit: for a source taken out of the configuration. Its past runs stay
    /// in `sync_runs`, as history. Returns the records and observations removed.
    pub fn forget_source(&mut self, source: &str) -> Result<(u64, u64)> {
        let mut manifest = self.manifest.clone();
        let Some(state) = manifest.sources.remove(source) else {
            return Err(StoreError::UnknownSource(source.to_owned()));
        };
        manifest.generation += 1;
        self.writer
            .delete_term(Term::from_field_text(self.fields.source, source));
        self.switch(manifest)?;
        Ok((state.n_records, state.n_observations))
    }

    /// Replaces the `subject_links` table, in one commit of its own: readers see the old
    /// links or the new ones, never a mix.
    pub fn set_subject_links(&mut self, links: &[crate::SubjectLink]) -> Result<()> {
        let mut manifest = self.manifest.clone();
        manifest.generation += 1;
        let rel = format!("subject_links.{}.parquet", manifest.generation);
        let path = self.dir.tables.join(&rel);
        let mut out = create_parquet(&path, &crate::SUBJECT_LINKS_SCHEMA)?;
        let batch = crate::tables::subject_links_batch(links).map_err(|e| StoreError::Parquet {
            path: path.clone(),
            source: e.into(),
        })?;
        out.write(&batch).map_err(|source| StoreError::Parquet {
            path: path.clone(),
            source,
        })?;
        close_parquet(out, &path)?;
        manifest.subject_links = Some(rel);
        self.dir.sync_tables_dirs();
        self.switch(manifest)
    }

    /// Commits tantivy with `manifest` as payload: the atomic switch to the new state.
    fn switch(&mut self, manifest: Manifest) -> Result<()> {
        let payload = serde_json::to_string(&manifest).map_err(|e| self.dir.corrupt(e))?;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.dir.share_index_metadata();
        let previous = std::mem::replace(&mut self.manifest, manifest);
        self.collect_garbage(Some(&previous))?;
        Ok(())
    }

    /// Writes the new `sync_runs` file with `run` appended, then commits tantivy with
    /// `manifest` as payload: the atomic switch to the new state.
    fn commit_manifest(&mut self, mut manifest: Manifest, run: &SyncRun) -> Result<()> {
        let rel = format!("sync_runs.{}.parquet", manifest.generation);
        let path = self.dir.tables.join(&rel);
        let mut out = create_parquet(&path, &SYNC_RUNS_SCHEMA)?;
        let parquet_err = |source| StoreError::Parquet {
            path: path.clone(),
            source,
        };
        if let Some(old) = &self.manifest.sync_runs {
            for batch in read_parquet(&self.dir.tables.join(old))? {
                out.write(&batch?).map_err(parquet_err)?;
            }
        }
        out.write(&sync_runs_batch(std::slice::from_ref(run))?)
            .map_err(parquet_err)?;
        close_parquet(out, &path)?;
        manifest.sync_runs = Some(rel);
        self.dir.sync_tables_dirs();
        self.switch(manifest)
    }

    /// Deletes table files that neither the committed state nor `previous` names.
    /// The previous generation is kept so a reader that loaded it a moment before the
    /// commit can finish its query.
    fn collect_garbage(&self, previous: Option<&Manifest>) -> Result<()> {
        let keep: HashSet<&str> = self
            .manifest
            .files()
            .chain(previous.into_iter().flat_map(|m| m.files()))
            .collect();
        for (dir, prefix) in [
            (self.dir.tables.clone(), ""),
            (self.dir.records(), "records/"),
            (self.dir.observations(), "observations/"),
        ] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                // Only files of crossdex's naming (`<name>.<generation>.parquet`) are
                // ever removed: a user's file dropped in here is left alone.
                if !is_generation_file(name) {
                    continue;
                }
                let rel = format!("{prefix}{name}");
                if !keep.contains(rel.as_str()) {
                    let path = entry.path();
                    if let Err(e) = fs::remove_file(&path) {
                        tracing::warn!("cannot remove stale table file {}: {e}", path.display());
                    }
                }
            }
        }
        Ok(())
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Whether `name` is a table file crossdex writes: `<name>.<generation>.parquet`.
fn is_generation_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".parquet") else {
        return false;
    };
    let Some((base, generation)) = stem.rsplit_once('.') else {
        return false;
    };
    !base.is_empty()
        && !generation.is_empty()
        && generation.bytes().all(|b| b.is_ascii_digit())
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One sync of one source being applied. Dropping it without committing abandons
/// everything it wrote.
pub struct SyncTxn<'a> {
    w: &'a mut Writer,
    source: String,
    system: String,
    generation: u64,
    started_at: DateTime<Utc>,
    synced_at: DateTime<Utc>,
    records_rel: String,
    observations_rel: String,
    records_path: PathBuf,
    observations_path: PathBuf,
    records_out: Option<ArrowWriter<File>>,
    observations_out: Option<ArrowWriter<File>>,
    records: RecordsBuilder,
    observations: ObservationsBuilder,
    lookup: HashLookup,
    /// Fingerprints of the ids upserted by this sync.
    seen: HashSet<u128>,
    /// Fingerprints of the ids the source reported deleted.
    deleted: HashSet<u128>,
    counts: Counts,
    rejections: Vec<Rejection>,
    n_records: u64,
    n_observations: u64,
    hash_buf: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for SyncTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncTxn")
            .field("source", &self.source)
            .field("generation", &self.generation)
            .field("counts", &self.counts)
            .finish()
    }
}

impl SyncTxn<'_> {
    /// The state committed before this transaction, which it will replace for its
    /// source only.
    pub fn committed(&self) -> &Manifest {
        &self.w.manifest
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Writes one page. Upserts of the same id twice in one sync keep the first and
    /// reject the second, so a sync never produces duplicate rows.
    pub fn apply(&mut self, page: Page) -> Result<()> {
        for r in page.rejected {
            self.reject(r);
        }
        for e in page.upserts {
            self.upsert(e)?;
        }
        for id in page.deletions {
            let fp = xxh128(&id);
            if self.seen.contains(&fp) {
                self.reject(Rejection {
                    native_id: Some(id),
                    reason: "deletion of an entity upserted earlier in the same sync; kept".into(),
                });
                continue;
            }
            if self.deleted.insert(fp) {
                self.w
                    .writer
                    .delete_term(Term::from_field_text(self.w.fields.id, &id));
            }
        }
        self.flush(false)
    }

    fn reject(&mut self, r: Rejection) {
        tracing::info!(
            source = %self.source,
            native_id = r.native_id.as_deref().unwrap_or("?"),
            "rejected: {}",
            r.reason
        );
        self.counts.rejected += 1;
        if self.rejections.len() < MAX_KEPT_REJECTIONS {
            self.rejections.push(r);
        }
    }

    fn upsert(&mut self, e: Entity) -> Result<()> {
        let r = &e.record;
        if r.source != self.source {
            self.reject(Rejection {
                native_id: Some(r.native_id.clone()),
                reason: format!(
                    "entity of source `{}` in a sync of `{}`",
                    r.source, self.source
                ),
            });
            return Ok(());
        }
        let fp = xxh128(&r.id);
        if !self.seen.insert(fp) {
            let reason = format!("duplicate id `{}` in the same sync; first copy kept", r.id);
            self.reject(Rejection {
                native_id: Some(r.native_id.clone()),
                reason,
            });
            return Ok(());
        }
        self.deleted.remove(&fp);
        let hash = content_hash(&e, &mut self.hash_buf) ^ self.w.sensitive_mark;
        let fields = self.w.fields;
        match self.lookup.get(&e.record.id)? {
            Some(old) if old == hash => self.counts.unchanged += 1,
            old => {
                if old.is_some() {
                    self.counts.updated += 1;
                    self.w
                        .writer
                        .delete_term(Term::from_field_text(fields.id, &e.record.id));
                } else {
                    self.counts.added += 1;
                }
                self.w.writer.add_document(index::document(
                    &fields,
                    &e,
                    hash,
                    &self.w.sensitive,
                ))?;
            }
        }
        self.records.push(&e, self.synced_at);
        self.observations.push(&e);
        Ok(())
    }

    fn flush(&mut self, all: bool) -> Result<()> {
        if self.records.len() >= BATCH_ROWS || (all && self.records.len() > 0) {
            let batch = self.records.finish()?;
            self.write_records(&batch)?;
        }
        if self.observations.len() >= BATCH_ROWS || (all && self.observations.len() > 0) {
            let batch = self.observations.finish()?;
            self.write_observations(&batch)?;
        }
        Ok(())
    }

    fn write_records(&mut self, batch: &RecordBatch) -> Result<()> {
        self.n_records += batch.num_rows() as u64;
        let out = self.records_out.as_mut().expect("open until commit");
        out.write(batch).map_err(|source| StoreError::Parquet {
            path: self.records_path.clone(),
            source,
        })
    }

    fn write_observations(&mut self, batch: &RecordBatch) -> Result<()> {
        self.n_observations += batch.num_rows() as u64;
        let out = self.observations_out.as_mut().expect("open until commit");
        out.write(batch).map_err(|source| StoreError::Parquet {
            path: self.observations_path.clone(),
            source,
        })
    }

    /// Carries the previous state of the source over: after a full sync only what was
    /// seen survives; after an incremental one, everything not replaced or deleted.
    fn merge_previous(&mut self, mode: SyncMode) -> Result<()> {
        let Some(prev) = self.w.manifest.sources.get(&self.source).cloned() else {
            return Ok(());
        };
        let id_field = self.w.fields.id;
        for batch in read_parquet(&self.w.dir.tables.join(&prev.records))? {
            let batch = batch?;
            let ids = string_column(&batch, "id")?;
            let mut keep = Vec::with_capacity(ids.len());
            for id in ids.iter() {
                let id = id.unwrap_or_default();
                let fp = xxh128(id);
                let replaced = self.seen.contains(&fp);
                let gone = !replaced && (mode == SyncMode::Full || self.deleted.contains(&fp));
                if gone {
                    self.counts.deleted += 1;
                    if mode == SyncMode::Full {
                        self.w
                            .writer
                            .delete_term(Term::from_field_text(id_field, id));
                    }
                }
                keep.push(!replaced && !gone);
            }
            let kept = filter_record_batch(&batch, &BooleanArray::from(keep))?;
            if kept.num_rows() > 0 {
                self.write_records(&kept)?;
            }
        }
        if mode == SyncMode::Full {
            return Ok(());
        }
        for batch in read_parquet(&self.w.dir.tables.join(&prev.observations))? {
            let batch = batch?;
            let ids = string_column(&batch, "record_id")?;
            let keep: BooleanArray = ids
                .iter()
                .map(|id| {
                    let fp = xxh128(id.unwrap_or_default());
                    Some(!self.seen.contains(&fp) && !self.deleted.contains(&fp))
                })
                .collect();
            let kept = filter_record_batch(&batch, &keep)?;
            if kept.num_rows() > 0 {
                self.write_observations(&kept)?;
            }
        }
        Ok(())
    }

    /// Makes the sync visible, atomically, with `checkpoint` committed beside it.
    /// `mode` is the mode the connector actually ran: after a full sync, entities of
    /// the source that no page mentioned are deleted.
    pub fn commit(mut self, mode: SyncMode, checkpoint: Option<Checkpoint>) -> Result<SyncRun> {
        self.flush(true)?;
        self.merge_previous(mode)?;
        let records_out = self.records_out.take().expect("open until commit");
        close_parquet(records_out, &self.records_path)?;
        let observations_out = self.observations_out.take().expect("open until commit");
        close_parquet(observations_out, &self.observations_path)?;

        let mut manifest = self.w.manifest.clone();
        manifest.generation = self.generation;
        let finished_at = Utc::now();
        manifest.sources.insert(
            self.source.clone(),
            SourceState {
                system: self.system.clone(),
                records: self.records_rel.clone(),
                observations: self.observations_rel.clone(),
                n_records: self.n_records,
                n_observations: self.n_observations,
                checkpoint,
                synced_at: finished_at,
            },
        );
        let run = SyncRun {
            run_id: format!("{}-{}", self.source, self.generation),
            source: self.source.clone(),
            system: self.system.clone(),
            mode,
            started_at: self.started_at,
            finished_at,
            status: if self.counts.rejected > 0 {
                RunStatus::Partial
            } else {
                RunStatus::Succeeded
            },
            counts: self.counts,
            error: None,
            rejections: std::mem::take(&mut self.rejections),
        };
        self.w.commit_manifest(manifest, &run)?;
        self.done = true;
        Ok(run)
    }
}

impl Drop for SyncTxn<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Abandoned: forget the uncommitted documents and the half-written files.
        drop(self.records_out.take());
        drop(self.observations_out.take());
        if let Err(e) = self.w.writer.rollback() {
            tracing::error!("cannot roll back the index writer: {e}");
        }
        for p in [&self.records_path, &self.observations_path] {
            let _ = fs::remove_file(p);
        }
    }
}
