//! Records in and out of files: CSV and TSV (a header row; numbers and true/false typed),
//! JSON Lines (one object per line) and plain lines (each becomes `{field: line}`).

use crate::StageError;
use std::path::Path;

use serde_json::{Map, Value};

/// A pipeline record: a flat JSON object.
pub type Record = Map<String, Value>;

/// File formats for `read` and `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    /// Tab-separated, with a header row, like CSV.
    Tsv,
    Jsonl,
    Lines,
}

/// The format `given`, or the one `path`'s extension names.
pub fn format_of(path: &Path, given: Option<&str>) -> Result<Format, StageError> {
    let f = given
        .map(str::to_string)
        .unwrap_or_else(|| path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default());
    match f.as_str() {
        "csv" => Ok(Format::Csv),
        "tsv" | "tab" => Ok(Format::Tsv),
        "jsonl" | "json" => Ok(Format::Jsonl),
        "lines" | "txt" | "smi" => Ok(Format::Lines),
        other => {
            Err(format!("unknown format {other:?}; use csv, tsv, jsonl or lines (or a path ending in one)").into())
        }
    }
}

/// Parses at most `max` records from `text`.
pub fn parse_records(text: &str, format: Format, field: &str, max: usize) -> Result<Vec<Record>, StageError> {
    let mut out = Vec::new();
    match format {
        Format::Lines => {
            for l in text.lines().map(str::trim).filter(|l| !l.is_empty()).take(max) {
                out.push(Map::from_iter([(field.to_string(), Value::from(l))]));
            }
        }
        Format::Jsonl => {
            for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).take(max) {
                match serde_json::from_str::<Value>(l) {
                    Ok(Value::Object(m)) => out.push(m),
                    Ok(_) => return Err(format!("line {}: not a JSON object", i + 1).into()),
                    Err(e) => return Err(format!("line {}: {e}", i + 1).into()),
                }
            }
        }
        Format::Csv | Format::Tsv => {
            let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
            let mut r = csv::ReaderBuilder::new().delimiter(delimiter).from_reader(text.as_bytes());
            let headers = r.headers().map_err(|e| e.to_string())?.clone();
            for (i, rec) in r.records().take(max).enumerate() {
                let rec = rec.map_err(|e| format!("row {}: {e}", i + 2))?;
                let mut m = Map::new();
                for (h, v) in headers.iter().zip(rec.iter()) {
                    let value = if let Ok(n) = v.parse::<f64>() {
                        Value::from(n)
                    } else if v == "true" || v == "false" {
                        Value::from(v == "true")
                    } else {
                        Value::from(v)
                    };
                    m.insert(h.to_string(), value);
                }
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// Writes `records` to `path` (creating its folder); `lines` writes `field` (default:
/// each record's first field), one value per line.
pub fn write_records(path: &Path, format: Format, field: Option<&str>, records: &[Record]) -> Result<(), StageError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut columns: Vec<String> = Vec::new();
    for r in records {
        for k in r.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let text = match format {
        Format::Jsonl => records.iter().map(|r| Value::Object(r.clone()).to_string() + "\n").collect::<String>(),
        Format::Lines => {
            let value = |r: &Record| match field {
                Some(f) => r.get(f).map(plain),
                None => r.values().next().map(plain),
            };
            records.iter().map(|r| value(r).unwrap_or_default() + "\n").collect::<String>()
        }
        Format::Csv | Format::Tsv => {
            let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
            let mut w = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
            w.write_record(&columns).map_err(|e| e.to_string())?;
            for r in records {
                w.write_record(columns.iter().map(|c| r.get(c).map(plain).unwrap_or_default()))
                    .map_err(|e| e.to_string())?;
            }
            String::from_utf8(w.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?
        }
    };
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// A value as text: strings bare, anything else as JSON.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
