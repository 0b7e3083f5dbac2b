//! The JSON record a pipeline stage receives and answers (the host sends the
//! record plus the pipeline's `params`; the stage answers the record with its
//! additions). Shared by the plugins that export stages.

use serde_json::{Map, Value};

/// A stage's input record and its string field `field`.
pub fn stage_record(input: &str, field: &str) -> Result<(Map<String, Value>, String), String> {
    let v: Value = serde_json::from_str(input).map_err(|e| format!("record is not JSON: {e}"))?;
    let Value::Object(map) = v else { return Err("record must be a JSON object".into()) };
    let s =
        map.get(field).and_then(Value::as_str).ok_or_else(|| format!("record has no {field:?} string"))?.to_string();
    Ok((map, s))
}

/// A stage's answer: the record without the host's `params`, with `fields` (an
/// object) added.
pub fn stage_answer(mut map: Map<String, Value>, fields: Value) -> Result<String, String> {
    map.remove("params");
    if let Value::Object(f) = fields {
        map.extend(f);
    }
    serde_json::to_string(&Value::Object(map)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_and_answered() {
        let (map, s) = stage_record(r#"{"smiles": "CCO", "params": {"max": 3}}"#, "smiles").expect("record");
        assert_eq!(s, "CCO");
        assert_eq!(
            stage_answer(map, serde_json::json!({"valid": true})).expect("answer"),
            r#"{"smiles":"CCO","valid":true}"#
        );
        assert_eq!(stage_record(r#"{"x": 1}"#, "smiles").expect_err("missing"), "record has no \"smiles\" string");
        assert_eq!(stage_record("[1]", "smiles").expect_err("array"), "record must be a JSON object");
    }
}
