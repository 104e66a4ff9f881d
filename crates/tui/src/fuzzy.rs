//! Fuzzy matching for the command palette: "sbjint3" finds `subject: subj:INT_0003`.

use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

use crate::app::PaletteItem;

/// The `limit` items whose labels match `query` best, best first; every item, in
/// order, for an empty query.
pub fn best(query: &str, items: Vec<PaletteItem>, limit: usize) -> Vec<PaletteItem> {
    if query.trim().is_empty() {
        return items.into_iter().take(limit).collect();
    }
    let mut matcher = Matcher::new(Config::DEFAULT);
    let pattern = Pattern::parse(query, CaseMatching::Ignore, Normalization::Smart);
    let mut buf = Vec::new();
    let mut scored: Vec<(u32, usize, PaletteItem)> = items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let label = item.label();
            let score = pattern.score(Utf32Str::new(&label, &mut buf), &mut matcher)?;
            Some((score, i, item))
        })
        .collect();
    // Best score first; among equals, the order the palette lists them in.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(limit)
        .map(|(_, _, item)| item)
        .collect()
}
