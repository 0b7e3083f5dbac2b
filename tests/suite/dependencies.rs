//! The dependency direction written in ARCHITECTURE.md, enforced.

use std::collections::BTreeMap;
use std::path::Path;

/// Each crate and the plinth crates it may depend on. Leaves depend on no plinth crate.
const ALLOWED: &[(&str, &[&str])] = &[
    ("plinth-tokenizer", &[]),
    ("plinth-data", &[]),
    ("plinth-layers", &[]),
    ("plinth-model", &["plinth-layers"]),
    ("plinth-train", &["plinth-model", "plinth-tokenizer", "plinth-data", "plinth-dist"]),
    ("plinth-generate", &["plinth-model", "plinth-tokenizer", "plinth-data"]),
    (
        "plinth-finetune",
        &["plinth-model", "plinth-tokenizer", "plinth-data", "plinth-train", "plinth-generate", "plinth-dist"],
    ),
    ("plinth-pipeline", &["plinth-data", "plinth-train", "plinth-generate", "plinth-finetune", "plinth-curate"]),
    ("plinth-curate", &["plinth-data"]),
    ("plinth-interop", &["plinth-model", "plinth-tokenizer", "plinth-data", "plinth-train", "plinth-finetune"]),
    (
        "plinth-bench",
        &[
            "plinth-layers",
            "plinth-model",
            "plinth-train",
            "plinth-data",
            "plinth-generate",
            "plinth-pipeline",
            "plinth-interop",
            "plinth-plugin-host",
            "plinth-plugin-example",
        ],
    ),
    ("plinth-abi", &[]),
    ("plinth-dist", &[]),
    ("plinth-plugin-sdk", &["plinth-abi"]),
    ("plinth-plugin-host", &["plinth-abi", "plinth-data"]),
    (
        "plinth-cli",
        &[
            "plinth-model",
            "plinth-tokenizer",
            "plinth-data",
            "plinth-train",
            "plinth-generate",
            "plinth-finetune",
            "plinth-pipeline",
            "plinth-curate",
            "plinth-interop",
            "plinth-dist",
            "plinth-plugin-host",
        ],
    ),
];

#[test]
fn crates_depend_only_downwards() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut seen = 0;
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("Cargo.toml");
        let doc: toml::Table = toml::from_str(&text).expect("valid manifest");
        let name = doc["package"]["name"].as_str().expect("name").to_string();
        let deps: Vec<String> = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| t.keys().filter(|k| k.starts_with("plinth-")).cloned().collect())
            .unwrap_or_default();
        let ok = allowed
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in ALLOWED; add it to this table and to ARCHITECTURE.md"));
        for d in deps {
            assert!(ok.contains(&d.as_str()), "{name} depends on {d}, against the direction in ARCHITECTURE.md");
        }
        seen += 1;
    }
    assert_eq!(seen, ALLOWED.len(), "every crate is listed");
}
