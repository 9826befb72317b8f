//! The config loader (`crates/server/src/config.rs`): any text is read as the server reads a
//! config file or `HAPPN_SERVER_CONFIG` (parse, deep-merge over another document, interpret,
//! cross-check) without a panic; what it refuses is a `ConfigError` that names the problem.
#![no_main]

use happn_rs::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Two documents, as a file plus the environment variable: split at the first line feed.
    let (first, second) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(mut doc) = config::parse_json("fuzz", first) else {
        // Not JSON: an error, with the source named.
        let err = config::parse_json("fuzz", first).unwrap_err();
        assert!(err.to_string().contains("fuzz"));
        return;
    };
    interpret(&doc);
    if let Ok(over) = config::parse_json("HAPPN_SERVER_CONFIG", second) {
        config::merge(&mut doc, over);
        interpret(&doc);
    }
});

fn interpret(doc: &serde_json::Value) {
    match config::from_value(doc) {
        Ok(loaded) => {
            let _ = loaded.config.check();
            // The data store settings are derived without touching the disk.
            let _ = loaded.config.data.path_of(&loaded.config.data.file);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
