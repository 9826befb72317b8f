//! The on-disk encoding of one record's value (the key is the record's path).
//!
//! ```text
//! byte 0       format version (1)
//! byte 1       flags: bit 0 = a tag follows
//! bytes 2..10  created,  i64 little-endian (epoch ms)
//! bytes 10..18 modified, i64 little-endian (epoch ms)
//! [if tagged]  tag length u32 little-endian, then the tag's UTF-8 bytes
//! rest         the document body (`data`) as JSON text (an object)
//! ```
//!
//! Why this and not `serde_json` of the whole `Record`: the path is already the key, so storing
//! it again would double the size of small records, and the fixed header is read without a JSON
//! parse. The body stays JSON because it is arbitrary JSON anyway (serde_json with
//! `preserve_order` + `float_roundtrip` round-trips it exactly, key order included), and it keeps
//! the file debuggable. The version byte lets a later format be read side by side.

use happn_engine::{Body, Record, StoreError};

const VERSION: u8 = 1;
const HAS_TAG: u8 = 1;
const HEADER: usize = 18;

pub(crate) fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    let tag_len = record.tag.as_ref().map_or(0, |t| 4 + t.len());
    // A rough guess for the body avoids most regrowth for small documents.
    let mut out = Vec::with_capacity(HEADER + tag_len + 64);
    out.push(VERSION);
    out.push(if record.tag.is_some() { HAS_TAG } else { 0 });
    out.extend_from_slice(&record.created.to_le_bytes());
    out.extend_from_slice(&record.modified.to_le_bytes());
    if let Some(tag) = &record.tag {
        let len = u32::try_from(tag.len()).map_err(|_| StoreError::Io(format!("tag of {:?} is too long", record.path)))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    out.extend_from_slice(record.data.json().as_bytes());
    Ok(out)
}

pub(crate) fn decode(path: &str, bytes: &[u8]) -> Result<Record, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("record at {path:?}: {what}"));
    if bytes.len() < HEADER {
        return Err(corrupt("value shorter than its header"));
    }
    if bytes[0] != VERSION {
        return Err(corrupt(&format!("unknown record format version {}", bytes[0])));
    }
    let flags = bytes[1];
    if flags & !HAS_TAG != 0 {
        return Err(corrupt(&format!("unknown flags {flags:#04x}")));
    }
    let created = i64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
    let modified = i64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes"));
    let mut rest = &bytes[HEADER..];
    let tag = if flags & HAS_TAG != 0 {
        if rest.len() < 4 {
            return Err(corrupt("truncated tag length"));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        rest = &rest[4..];
        if rest.len() < len {
            return Err(corrupt("truncated tag"));
        }
        let tag = std::str::from_utf8(&rest[..len]).map_err(|_| corrupt("tag is not UTF-8"))?;
        rest = &rest[len..];
        Some(tag.to_string())
    } else {
        None
    };
    let text = std::str::from_utf8(rest).map_err(|_| corrupt("body is not UTF-8"))?;
    let data = Body::from_json(text).map_err(|e| corrupt(&format!("body is not a JSON object: {e}")))?;
    Ok(Record {
        path: path.to_string(),
        data,
        created,
        modified,
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn sample(tag: Option<&str>) -> Record {
        let Value::Object(data) = json!({"z": 1, "a": [1.5, "x", null, {"b": true}], "big": 18446744073709551615u64, "f": 0.1}) else {
            unreachable!()
        };
        Record {
            path: "/p/q".into(),
            data: data.into(),
            created: -5,
            modified: 1_700_000_000_123,
            tag: tag.map(str::to_string),
        }
    }

    #[test]
    fn round_trips_exactly_with_key_order() {
        for tag in [None, Some("snap"), Some("")] {
            let r = sample(tag);
            let bytes = encode(&r).unwrap();
            let back = decode("/p/q", &bytes).unwrap();
            assert_eq!(back, r);
            let keys: Vec<&String> = back.data.keys().collect();
            assert_eq!(keys, ["z", "a", "big", "f"], "key order preserved");
        }
    }

    #[test]
    fn damaged_values_are_corrupt_not_panics() {
        let bytes = encode(&sample(Some("t"))).unwrap();
        for cut in 0..bytes.len() {
            assert!(matches!(decode("/p", &bytes[..cut]), Err(StoreError::Corrupt(_))), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = 9;
        let err = decode("/p", &bad).unwrap_err().to_string();
        assert!(err.contains("version 9") && err.contains("\"/p\""), "{err}");
        let mut bad = bytes;
        bad[1] = 0x80;
        assert!(matches!(decode("/p", &bad), Err(StoreError::Corrupt(_))));
    }
}
