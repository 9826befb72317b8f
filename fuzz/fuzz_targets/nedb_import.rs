//! The nedb importer (`crates/engine/src/nedb.rs`, `happn-rs import`): any bytes are read without
//! a panic, and whatever it loads round-trips through the exporter (`nedb::line`): the exported
//! lines read back to the same records, with nothing skipped, and export again to the same text.
#![no_main]

use happn_engine::nedb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The CLI reads the file as UTF-8 text; invalid UTF-8 is refused before this point.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = nedb::parse(text) else {
        return;
    };
    let lines: String = loaded.records.iter().map(|r| nedb::line(r) + "\n").collect();
    let again = match nedb::parse(&lines) {
        Ok(again) => again,
        Err(e) => panic!("the export of {text:?} does not load: {e}\n{lines}"),
    };
    assert_eq!(again.skipped, 0, "{lines}");
    assert_eq!(again.records, loaded.records, "from {text:?} through\n{lines}");
    let lines_again: String = again.records.iter().map(|r| nedb::line(r) + "\n").collect();
    assert_eq!(lines_again, lines);
});
