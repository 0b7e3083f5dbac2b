//! Record schemas derived from Rust types: a stage's input and output structs are
//! described by `schemars`, and their fields become the protocol's
//! [`Schema`]s, so what a stage declares is what it reads and adds.

use plinth_plugin_protocol::{FieldType, Schema};
use schemars::JsonSchema;
use serde_json::Value;

/// The fields of a flat struct `T` as a stage reads it (its Deserialize form):
/// those every record must carry, and those it may.
pub(crate) fn fields<T: JsonSchema>() -> Result<(Schema, Schema), String> {
    fields_of::<T>(schemars::schema_for!(T), false)
}

/// The fields a stage adds, from `T`'s Serialize form: every one is always written
/// and never null (a stage that has nothing to add rejects the record instead).
pub(crate) fn output_fields<T: JsonSchema>() -> Result<Schema, String> {
    let generator = schemars::generate::SchemaSettings::default().for_serialize().into_generator();
    let (always, sometimes) = fields_of::<T>(generator.into_root_schema_for::<T>(), true)?;
    match sometimes.keys().next() {
        Some(f) => Err(format!(
            "{}.{f} is not always written (skip_serializing_if?); a stage adds every output field or rejects the record",
            T::schema_name()
        )),
        None => Ok(always),
    }
}

fn fields_of<T: JsonSchema>(root: schemars::Schema, output: bool) -> Result<(Schema, Schema), String> {
    let v = root.as_value();
    let name = T::schema_name();
    let required: Vec<&str> =
        v.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(props) = v.get("properties").and_then(Value::as_object) else {
        return match v.get("type").and_then(Value::as_str) {
            Some("object") | Some("null") | None => Ok((Schema::new(), Schema::new())),
            Some(other) => Err(format!("{name} is a {other}; a record type must be a struct of named fields")),
        };
    };
    let (mut must, mut may) = (Schema::new(), Schema::new());
    for (field, prop) in props {
        if output && nullable(prop) {
            return Err(format!("{name}.{field} may be null (an Option); a stage adds a value or rejects the record"));
        }
        let ty = field_type(prop).ok_or_else(|| {
            format!("{name}.{field} has a type a record field cannot carry ({prop}); use a string, a number or a bool")
        })?;
        if required.contains(&field.as_str()) {
            must.insert(field.clone(), ty);
        } else {
            may.insert(field.clone(), ty);
        }
    }
    Ok((must, may))
}

/// The JSON Schema of `T`, for documentation (stage params).
pub(crate) fn json_schema<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).as_value().clone()
}

fn nullable(prop: &Value) -> bool {
    match prop.get("type") {
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => false,
    }
}

/// A property's record type: `string`, `number`/`integer` or `boolean`, alone or
/// with `null` (an `Option`).
fn field_type(prop: &Value) -> Option<FieldType> {
    let one = |t: &str| match t {
        "string" => Some(FieldType::String),
        "number" | "integer" => Some(FieldType::Number),
        "boolean" => Some(FieldType::Bool),
        _ => None,
    };
    match prop.get("type")? {
        Value::String(t) => one(t),
        Value::Array(ts) => {
            let named: Vec<&str> = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
            match named.as_slice() {
                [t] => one(t),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct In {
        smiles: String,
        weight: f64,
        count: u32,
        ok: bool,
        note: Option<String>,
        #[serde(default)]
        limit: usize,
    }

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Nested {
        inner: Vec<String>,
    }

    #[test]
    fn required_and_optional_fields_come_from_the_type() {
        let (must, may) = fields::<In>().expect("flat struct");
        assert_eq!(
            must,
            Schema::from([
                ("smiles".into(), FieldType::String),
                ("weight".into(), FieldType::Number),
                ("count".into(), FieldType::Number),
                ("ok".into(), FieldType::Bool),
            ])
        );
        assert_eq!(may, Schema::from([("note".into(), FieldType::String), ("limit".into(), FieldType::Number)]));
    }

    #[derive(serde::Serialize, JsonSchema)]
    #[allow(dead_code)]
    struct Out {
        n: usize,
        #[serde(default)]
        label: String,
    }

    #[derive(serde::Serialize, JsonSchema)]
    #[allow(dead_code)]
    struct Maybe {
        n: Option<usize>,
    }

    #[derive(serde::Serialize, JsonSchema)]
    #[allow(dead_code)]
    struct Skipped {
        #[serde(skip_serializing_if = "String::is_empty")]
        note: String,
    }

    #[test]
    fn outputs_are_read_from_what_serialize_writes() {
        let adds = output_fields::<Out>().expect("every field always written");
        assert_eq!(adds, Schema::from([("n".into(), FieldType::Number), ("label".into(), FieldType::String)]));
        assert!(output_fields::<Maybe>().expect_err("nullable").contains("Maybe.n may be null"));
        assert!(output_fields::<Skipped>().expect_err("skipped").contains("Skipped.note is not always written"));
    }

    #[test]
    fn a_field_a_record_cannot_carry_is_named() {
        let err = fields::<Nested>().expect_err("a list");
        assert!(err.contains("Nested.inner") && err.contains("a string, a number or a bool"), "{err}");
        assert_eq!(fields::<crate::NoParams>().expect("empty"), (Schema::new(), Schema::new()));
    }
}
