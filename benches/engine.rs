//! Engine benchmark: ingest rate, size on disk, search and join latency, peak memory.
//!
//! ```text
//! cargo bench --bench engine                         100k records, 8 observations each
//! cargo bench --bench engine -- --records 1000000
//! cargo bench --bench engine -- --dump /tmp/bench    also write the data and queries for
//!                                                    benches/sqlite_fts5.py (see compare.sh)
//! ```
//!
//! Figures are printed with a baseline measured in the same run — generating the same
//! records without storing them — because absolute numbers on a shared machine drift.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use crossdex_model::{Entity, Observation, Page, Record, SyncMode};
use crossdex_query::QueryEngine;
use crossdex_store::{Snapshot, Writer};

const PAGE: usize = 1000;
const DIAGNOSES: &[&str] = &[
    "healthy control",
    "mild cognitive impairment",
    "alzheimer disease",
    "frontotemporal dementia",
    "lewy body dementia",
];
const SCANNERS: &[&str] = &[
    "Siemens Prisma 3T",
    "GE Discovery MR750 3T",
    "Philips Achieva 1.5T",
    "Siemens Biograph mMR",
];

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Roughly Zipf-distributed rank in 0..n: common words are common.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as usize).saturating_sub(1).min(n - 1)
    }
}

fn vocabulary() -> Vec<String> {
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "do", "gu", "fe", "ri", "bo",
        "xa",
    ];
    let mut rng = Rng(7);
    (0..5000)
        .map(|_| {
            let n = 2 + rng.below(3);
            (0..n)
                .map(|_| syllables[rng.below(syllables.len())])
                .collect::<String>()
        })
        .collect()
}

fn words(rng: &mut Rng, vocab: &[String], n: usize) -> String {
    (0..n)
        .map(|_| vocab[rng.zipf(vocab.len())].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn page(index: usize, vocab: &[String]) -> Page {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1));
    let upserts = (0..PAGE)
        .map(|i| {
            let n = index * PAGE + i;
            let subject = format!("INT_{:06}", n / 4);
            let title = format!("session {} {}", subject, words(&mut rng, vocab, 2));
            let mut r = Record::new("bench", "files", "session", &n.to_string(), &title);
            r.subject_key = Some(subject);
            r.project = Some(format!("PRJ{}", n % 7));
            r.description = Some(words(&mut rng, vocab, 12));
            r.created_at = Utc
                .timestamp_opt(1_600_000_000 + (n as i64) * 60, 0)
                .single();
            let moca = 10 + rng.below(21);
            let date = Utc
                .timestamp_opt(1_600_000_000 + rng.below(100_000_000) as i64, 0)
                .single()
                .unwrap();
            let weight = 50.0 + rng.below(500) as f64 / 10.0;
            let observations = vec![
                Observation::number("moca", moca as f64, moca.to_string()).with_event("baseline"),
                Observation::number(
                    "mmse",
                    (moca + 2).min(30) as f64,
                    (moca + 2).min(30).to_string(),
                )
                .with_event("baseline"),
                Observation::date("visit_date", date, date.format("%Y-%m-%d").to_string()),
                Observation::text("diagnosis", DIAGNOSES[rng.below(DIAGNOSES.len())]),
                Observation::text("scanner", SCANNERS[rng.below(SCANNERS.len())]),
                Observation::text("site", format!("site {}", rng.below(12))),
                Observation::number("weight_kg", weight, format!("{weight:.1}")),
                Observation::text("notes", words(&mut rng, vocab, 5)),
            ];
            Entity {
                record: r,
                observations,
            }
        })
        .collect();
    Page {
        upserts,
        ..Page::default()
    }
}

fn queries(vocab: &[String], n: usize) -> Vec<String> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| match i % 10 {
            0..=5 => vocab[rng.zipf(vocab.len())].clone(),
            6..=8 => format!("{} {}", vocab[rng.zipf(200)], vocab[rng.zipf(vocab.len())]),
            _ => DIAGNOSES[rng.below(DIAGNOSES.len())]
                .split(' ')
                .next()
                .unwrap()
                .to_owned(),
        })
        .collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3
    };
    (at(0.50), at(0.99))
}

fn dump(dir: &Path, pages: usize, vocab: &[String], queries: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(dir.join("records.jsonl")).unwrap());
    for p in 0..pages {
        for e in page(p, vocab).upserts {
            let r = &e.record;
            let obs: Vec<_> = e
                .observations
                .iter()
                .map(|o| (&o.variable, &o.value_text, o.value_num))
                .collect();
            let line = serde_json::json!({"id": r.id, "title": r.title, "body": r.description, "subject": r.subject_key, "obs": obs});
            writeln!(out, "{line}").unwrap();
        }
    }
    std::fs::write(dir.join("queries.txt"), queries.join("\n") + "\n").unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let records: usize = arg("--records").map_or(100_000, |v| v.parse().expect("--records N"));
    let pages = records.div_ceil(PAGE);
    let records = pages * PAGE;
    let vocab = vocabulary();
    let queries = queries(&vocab, 2000);
    if let Some(d) = arg("--dump") {
        dump(Path::new(&d), pages, &vocab, &queries);
        println!("wrote {d}/records.jsonl and {d}/queries.txt");
    }
    // `--keep DIR`: the store is built in DIR (which must not exist) and left there,
    // for benches/http.sh to serve.
    let keep = arg("--keep").map(PathBuf::from);
    let dir: PathBuf = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("crossdex-bench-{}", std::process::id()))
    });
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Baseline: producing the same records, without storing them.
    let t = Instant::now();
    let mut n = 0;
    for p in 0..pages {
        n += std::hint::black_box(page(p, &vocab)).upserts.len();
    }
    let generate = t.elapsed();
    assert_eq!(n, records);

    let t = Instant::now();
    let mut writer = Writer::open(&dir).unwrap();
    let mut txn = writer.begin("bench", "files", Utc::now()).unwrap();
    for p in 0..pages {
        txn.apply(page(p, &vocab)).unwrap();
    }
    let run = txn.commit(SyncMode::Full, None).unwrap();
    let total = t.elapsed();
    drop(writer);
    assert_eq!(run.counts.added as usize, records);
    let store_only = total.saturating_sub(generate);
    let rss_ingest = peak_rss_mib();
    if args.iter().any(|a| a == "--ingest-only") {
        println!(
            "ingest {:.0} records/s (generation alone {:.0} records/s), peak {rss_ingest:.0} MiB",
            records as f64 / total.as_secs_f64(),
            records as f64 / generate.as_secs_f64()
        );
        if keep.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return;
    }

    let snapshot = Snapshot::open(&dir).unwrap();
    for q in queries.iter().take(200) {
        snapshot.search(q, 10).unwrap();
    }
    let mut samples = Vec::with_capacity(queries.len());
    let mut hits = 0;
    for q in &queries {
        let t = Instant::now();
        hits += snapshot.search(q, 10).unwrap().len();
        samples.push(t.elapsed());
    }
    let (p50, p99) = percentiles(samples);

    let engine = QueryEngine::open(&dir).unwrap();
    let mut sql_samples = Vec::new();
    for q in queries.iter().take(300) {
        let sql = format!("SELECT id, score, title FROM search('{q}', 10)");
        let t = Instant::now();
        engine.sql(&sql, vec![]).await.unwrap();
        sql_samples.push(t.elapsed());
    }
    let (sql_p50, sql_p99) = percentiles(sql_samples);
    let mut join_samples = Vec::new();
    for q in queries.iter().take(50) {
        let sql = format!(
            "SELECT r.project, count(*), avg(o.value_num) FROM search('{q}', 100) s \
             JOIN records r ON r.id = s.id JOIN observations o ON o.record_id = r.id AND o.variable = 'moca' \
             GROUP BY r.project"
        );
        let t = Instant::now();
        engine.sql(&sql, vec![]).await.unwrap();
        join_samples.push(t.elapsed());
    }
    let (join_p50, join_p99) = percentiles(join_samples);
    let mut scan_samples = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        engine
            .sql(
                "SELECT r.project, avg(o.value_num) FROM records r JOIN observations o ON o.record_id = r.id \
                 WHERE o.variable = 'moca' GROUP BY r.project",
                vec![],
            )
            .await
            .unwrap();
        scan_samples.push(t.elapsed());
    }
    let (scan_p50, _) = percentiles(scan_samples);

    let index_mb = dir_size(&dir.join("index")) as f64 / 1e6;
    let tables_mb = dir_size(&dir.join("tables")) as f64 / 1e6;
    let rate = records as f64 / total.as_secs_f64();
    println!(
        "crossdex engine benchmark: {records} records, {} observations",
        records * 8
    );
    println!(
        "  baseline: generating the records alone      {:>10.0} records/s",
        records as f64 / generate.as_secs_f64()
    );
    println!(
        "  ingest (generate + index + tables, commit)  {rate:>10.0} records/s  ({:.0} observations/s)",
        rate * 8.0
    );
    println!(
        "  ingest, store's share only                  {:>10.0} records/s",
        records as f64 / store_only.as_secs_f64()
    );
    println!(
        "  ingest time / generation time               {:>10.2}x",
        total.as_secs_f64() / generate.as_secs_f64()
    );
    println!(
        "  size on disk: index {index_mb:.1} MB, tables {tables_mb:.1} MB ({:.0} bytes/record)",
        (index_mb + tables_mb) * 1e6 / records as f64
    );
    println!(
        "  search (store, top 10, {} queries)          p50 {p50:.3} ms  p99 {p99:.3} ms  ({:.1} hits/query)",
        queries.len(),
        hits as f64 / queries.len() as f64
    );
    println!(
        "  search() through SQL (300 queries)          p50 {sql_p50:.3} ms  p99 {sql_p99:.3} ms"
    );
    println!(
        "  search() JOIN records JOIN observations     p50 {join_p50:.3} ms  p99 {join_p99:.3} ms"
    );
    println!("  records JOIN observations, full scan         p50 {scan_p50:.1} ms");
    println!(
        "  peak memory: after ingest {rss_ingest:.0} MiB, at end {:.0} MiB",
        peak_rss_mib()
    );
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
