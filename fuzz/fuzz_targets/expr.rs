//! The filter expression language: parse, type-check against a schema, and
//! evaluate on a record, never panicking.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use plinth_pipeline::expr;
use plinth_pipeline::FieldType;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(e) = expr::parse(text) else { return };
    let schema = BTreeMap::from([
        ("smiles".to_string(), FieldType::String),
        ("weight".to_string(), FieldType::Number),
        ("valid".to_string(), FieldType::Bool),
    ]);
    if e.check(&schema).is_ok() {
        let record = serde_json::json!({"smiles": "CCO", "weight": 46.07, "valid": true});
        let _ = e.eval(record.as_object().expect("object"));
    }
});
