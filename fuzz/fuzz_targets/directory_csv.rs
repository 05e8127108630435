//! The directory import's CSV reader: every input gives records or a line error, never a
//! panic; records are never empty, their lines only grow, and no field is invented (the
//! fields' text all comes from the input).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The reader is self-contained; compiling the file alone keeps this crate free of the
// gateway's dependency tree (a cold sanitizer build of it takes many minutes).
#[path = "../../services/gateway/src/csv.rs"]
#[allow(dead_code)]
mod csv;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.matches('\n').count() + 1;
    match csv::parse_csv(text) {
        Ok(records) => {
            let mut last = 0;
            for (line, fields) in &records {
                assert!(*line > last && *line <= lines, "line {line} after {last} of {lines}");
                assert!(!fields.is_empty());
                let chars: usize = fields.iter().map(|f| f.chars().count()).sum();
                assert!(chars <= text.chars().count());
                last = *line;
            }
        }
        Err((line, message)) => {
            assert!(line >= 1 && line <= lines, "error on line {line} of {lines}");
            assert!(!message.is_empty());
        }
    }
});
