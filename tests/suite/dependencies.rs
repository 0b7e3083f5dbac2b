//! The dependency direction and the `unsafe` boundary written in ARCHITECTURE.md,
//! enforced over every crate in `crates/` and every plugin in `plugins/`, counting
//! normal, build and dev-dependencies alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PROTOCOL: &str = "plinth-plugin-protocol";

/// Each crate and the plinth crates it may depend on. Leaves depend on no plinth crate.
const ALLOWED: &[(&str, &[&str])] = &[
    ("plinth-tokenizer", &[]),
    ("plinth-plugin-protocol", &[]),
    ("plinth-data", &[PROTOCOL]),
    ("plinth-layers", &[]),
    ("plinth-model", &["plinth-layers"]),
    ("plinth-checkpoint", &["plinth-model", "plinth-tokenizer", "plinth-data"]),
    (
        "plinth-train",
        &["plinth-model", "plinth-checkpoint", "plinth-tokenizer", "plinth-data", "plinth-dist", PROTOCOL],
    ),
    ("plinth-generate", &["plinth-model", "plinth-tokenizer", "plinth-data", PROTOCOL]),
    (
        "plinth-finetune",
        &[
            "plinth-model",
            "plinth-checkpoint",
            "plinth-tokenizer",
            "plinth-data",
            "plinth-train",
            "plinth-generate",
            "plinth-dist",
            PROTOCOL,
        ],
    ),
    (
        "plinth-pipeline",
        &[
            "plinth-model",
            "plinth-data",
            "plinth-checkpoint",
            "plinth-generate",
            "plinth-finetune",
            "plinth-curate",
            PROTOCOL,
        ],
    ),
    ("plinth-curate", &["plinth-data"]),
    (
        "plinth-interop",
        &["plinth-model", "plinth-checkpoint", "plinth-tokenizer", "plinth-data", "plinth-finetune", PROTOCOL],
    ),
    (
        "plinth-bench",
        &[
            "plinth-layers",
            "plinth-model",
            "plinth-checkpoint",
            "plinth-train",
            "plinth-data",
            "plinth-generate",
            "plinth-pipeline",
            "plinth-interop",
            "plinth-plugin-host",
            "plinth-plugin-molecule",
            PROTOCOL,
        ],
    ),
    ("plinth-abi", &[]),
    ("plinth-dist", &[]),
    ("plinth-plugin-sdk", &["plinth-abi", PROTOCOL]),
    ("plinth-plugin-tensors", &["plinth-abi", "plinth-plugin-sdk"]),
    ("plinth-plugin-test-support", &["plinth-plugin-sdk", PROTOCOL]),
    ("plinth-plugin-host", &["plinth-abi", PROTOCOL]),
    (
        "plinth-cli",
        &[
            "plinth-model",
            "plinth-checkpoint",
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
            PROTOCOL,
        ],
    ),
];

/// What a plugin may depend on: the plugin side of the boundary (SDK, tensors,
/// protocol, test kit) and the data library. Never the host, the model or the trainer.
const PLUGIN_MAY_USE: &[&str] =
    &["plinth-plugin-sdk", "plinth-plugin-tensors", PROTOCOL, "plinth-plugin-test-support", "plinth-data"];

/// The only crates whose code may be `unsafe` (each says why at its `allow`):
/// the ABI and both sides of it, the tensor hand-over, the c10d shim, the CPU
/// kernels and the fused optimizer step.
const UNSAFE_ALLOWED: &[&str] = &[
    "plinth-abi",
    "plinth-plugin-sdk",
    "plinth-plugin-tensors",
    "plinth-plugin-host",
    "plinth-dist",
    "plinth-layers",
    "plinth-train",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(name, folder, plinth dependencies of every kind)` of each package under `dir`.
fn packages(dir: &str) -> Vec<(String, PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join(dir)).expect("folder") {
        let folder = entry.expect("entry").path();
        let text = std::fs::read_to_string(folder.join("Cargo.toml")).expect("Cargo.toml");
        let doc: toml::Table = toml::from_str(&text).expect("valid manifest");
        let name = doc["package"]["name"].as_str().expect("name").to_string();
        let deps = ["dependencies", "dev-dependencies", "build-dependencies"]
            .iter()
            .filter_map(|k| doc.get(*k).and_then(|d| d.as_table()))
            .flat_map(|t| t.keys().filter(|k| k.starts_with("plinth-")).cloned())
            .collect();
        out.push((name, folder, deps));
    }
    out
}

#[test]
fn crates_depend_only_downwards() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let crates = packages("crates");
    for (name, _, deps) in &crates {
        let ok = allowed
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in ALLOWED; add it to this table and to ARCHITECTURE.md"));
        for d in deps {
            assert!(ok.contains(&d.as_str()), "{name} depends on {d}, against the direction in ARCHITECTURE.md");
        }
    }
    assert_eq!(crates.len(), ALLOWED.len(), "every crate is listed");
}

#[test]
fn plugins_never_depend_on_the_host() {
    let plugins = packages("plugins");
    assert!(plugins.len() >= 4, "the four shipped plugins are found");
    for (name, _, deps) in &plugins {
        for d in deps {
            assert!(
                PLUGIN_MAY_USE.contains(&d.as_str()),
                "plugin {name} depends on {d}; plugins may use only {PLUGIN_MAY_USE:?}"
            );
        }
    }
}

#[test]
fn unsafe_code_lives_only_in_the_listed_crates() {
    let mut found = Vec::new();
    for (name, folder, _) in packages("crates").into_iter().chain(packages("plugins")) {
        let mut stack = vec![folder.join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && std::fs::read_to_string(&path).expect("source").contains("allow(unsafe_code)")
                {
                    found.push(name.clone());
                    assert!(
                        UNSAFE_ALLOWED.contains(&name.as_str()),
                        "{} allows unsafe code, but {name} is not in UNSAFE_ALLOWED (ARCHITECTURE.md)",
                        path.display()
                    );
                }
            }
        }
    }
    // The workspace denies unsafe_code, so a crate without an `allow` has none.
    let root_manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("workspace manifest");
    assert!(root_manifest.contains("unsafe_code = \"deny\""), "the workspace lint must deny unsafe code");
    for name in UNSAFE_ALLOWED {
        assert!(found.iter().any(|f| f == name), "{name} is listed as allowed unsafe but has none; drop it");
    }
}
