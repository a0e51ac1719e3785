//! Canonical JSON: object keys sorted at every level, no insignificant whitespace. The same
//! value always gives the same bytes (oci-spec keeps annotations in `HashMap`s, whose order
//! changes from run to run).

use serde::Serialize;
use serde_json::Value;

fn sort(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
        other => other,
    }
}

/// The canonical bytes of `value`.
pub fn to_canonical_json<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let v = serde_json::to_value(value)?;
    serde_json::to_vec(&sort(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn hash_maps_serialize_the_same_every_time() {
        let first = {
            let m: HashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
            to_canonical_json(&m).unwrap()
        };
        for _ in 0..10 {
            let m: HashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
            assert_eq!(to_canonical_json(&m).unwrap(), first);
        }
        assert_eq!(
            to_canonical_json(&serde_json::json!({"b": {"z": 1, "a": [{"y": 1, "x": 2}]}, "a": 0}))
                .unwrap(),
            br#"{"a":0,"b":{"a":[{"x":2,"y":1}],"z":1}}"#
        );
    }
}
