//! The read-only gate: any text is refused or accepted as one query, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        let _ = crossdex_query::check_read_only(sql);
    }
});
