//! The terminal UI's latency on a store of synthetic records (built by the engine
//! benchmark with `--keep DIR`, see benches/tui.sh):
//!
//! - time to first frame: the service opened and the first screen drawn, and the first
//!   screen with the first search's hits and facets;
//! - keystroke to frame while typing a search: each key, its search (the debounce
//!   pause left out: it is a wait by design) and the frame that shows the new hits.
//!
//! Beside each figure, the baseline of the same run: the service's own search of the
//! same text, without the UI. Performance is measured here, never asserted in tests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossdex_service::{OpenOptions, QueryControl, SearchRequest, Service};
use crossdex_tui::Headless;

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99))
}

fn open(dir: &std::path::Path) -> Service {
    Service::open(OpenOptions {
        data_dir: Some(dir.to_path_buf()),
        ..OpenOptions::default()
    })
    .expect("the benchmark's store opens")
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
    let Some(dir) = arg("--data").map(PathBuf::from) else {
        eprintln!(
            "usage: cargo bench --bench tui -- --data DIR [--queries FILE]  (benches/tui.sh builds DIR)"
        );
        std::process::exit(2);
    };
    let queries: Vec<String> = arg("--queries")
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|t| {
            t.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| vec!["alpha beta".into(), "gamma".into()]);
    let (w, h) = (160, 48);
    let limit = Duration::from_secs(120);

    // Time to first frame: open, draw at once (the hits come later), then with hits.
    let t = Instant::now();
    let service = open(&dir);
    let mut ui = Headless::new(crossdex_tui::Backend::Local(service.clone()), "bench");
    let _ = ui.screen(w, h);
    let first_frame = t.elapsed();
    ui.settle(limit).await.expect("the first search answers");
    let _ = ui.screen(w, h);
    let first_hits = t.elapsed();
    // Baseline: the same first search (`*`, facets of 10) by the service alone.
    let t = Instant::now();
    let mut request = SearchRequest::new("*", crossdex_tui::app::PAGE);
    request.facets = Some(crossdex_tui::app::FACET_SIZE);
    service
        .search(&request, &QueryControl::default())
        .await
        .expect("the baseline search");
    let baseline_first = t.elapsed();
    println!(
        "first frame {:.1} ms; first frame with hits and facets {:.1} ms (the service's first search alone, facets included: {:.1} ms)",
        first_frame.as_secs_f64() * 1000.0,
        first_hits.as_secs_f64() * 1000.0,
        baseline_first.as_secs_f64() * 1000.0
    );

    // Keystroke to frame: type each query key by key; every key searches the prefix.
    // The hits come first (what the key changes), the facets over every hit after.
    let mut hits_samples = Vec::new();
    let mut facets_samples = Vec::new();
    let mut base_hits = Vec::new();
    let mut base_facets = Vec::new();
    for q in queries.iter().take(200) {
        ui.key(crossdex_tui::KeyEvent::new(
            crossdex_tui::KeyCode::Char('u'),
            crossdex_tui::KeyModifiers::CONTROL,
        ));
        ui.settle(limit).await.expect("a search answers");
        let mut typed = String::new();
        for c in q.chars() {
            typed.push(c);
            let t = Instant::now();
            ui.type_text(&c.to_string());
            ui.until(|app| app.search.due.is_none() && !app.search.loading, limit)
                .await
                .expect("the hits come");
            let _ = ui.screen(w, h);
            hits_samples.push(t.elapsed());
            ui.settle(limit).await.expect("the facets come");
            let _ = ui.screen(w, h);
            facets_samples.push(t.elapsed());
            // Baselines: the service's own searches of the same text, hits alone and
            // with facets. A prefix can be a query the syntax refuses (an open quote):
            // that is an answer too, as in the UI.
            let mut request = SearchRequest::new(typed.trim(), crossdex_tui::app::PAGE);
            request.facets = None;
            let t = Instant::now();
            let _ = service.search(&request, &QueryControl::default()).await;
            base_hits.push(t.elapsed());
            request.facets = Some(crossdex_tui::app::FACET_SIZE);
            let t = Instant::now();
            let _ = service.search(&request, &QueryControl::default()).await;
            base_facets.push(t.elapsed());
        }
    }
    let n = hits_samples.len();
    let (h50, h99) = percentiles(hits_samples);
    let (f50, f99) = percentiles(facets_samples);
    let (bh50, bh99) = percentiles(base_hits);
    let (bf50, bf99) = percentiles(base_facets);
    println!(
        "keystroke to frame with the new hits ({n} keys, {w}x{h}): p50 {h50:.2} ms p99 {h99:.2} ms; \
         the service's search without facets: p50 {bh50:.2} ms p99 {bh99:.2} ms (UI/service {:.2}x at p50, {:.2}x at p99)",
        h50 / bh50,
        h99 / bh99
    );
    println!(
        "keystroke to frame with the facets too: p50 {f50:.2} ms p99 {f99:.2} ms; \
         the service's search with facets: p50 {bf50:.2} ms p99 {bf99:.2} ms"
    );
}
