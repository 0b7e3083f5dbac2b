//! `plinth plugins new NAME`: a plugin crate outside the workspace that builds
//! against this checkout's SDK and loads on the first try.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The checkout this binary was built from (the SDK is not on crates.io yet).
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Writes the crate and returns its folder.
pub fn new_plugin(name: &str, dir: Option<&Path>) -> Result<PathBuf> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        bail!("plugin name {name:?} must start with a lower-case letter and use only a-z, 0-9, - and _");
    }
    let root = dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(name));
    if root.exists() {
        bail!("{} already exists; choose another name or --dir (nothing was overwritten)", root.display());
    }
    let checkout = checkout().canonicalize().context("locating the plinth checkout this binary was built from")?;
    let sdk = checkout.join("crates/plinth-plugin-sdk");
    if !sdk.join("Cargo.toml").exists() {
        bail!("the plinth SDK is not at {}; plugins new needs the checkout plinth was built from", sdk.display());
    }
    let lib = name.replace('-', "_");
    std::fs::create_dir_all(root.join("src")).with_context(|| format!("creating {}", root.display()))?;
    let write = |rel: &str, text: String| -> Result<()> {
        let p = root.join(rel);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    write(
        "Cargo.toml",
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
name = "{lib}"
crate-type = ["cdylib", "rlib"]

[dependencies]
plinth-plugin-sdk = {{ path = "{sdk}" }}
schemars = "1"
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
plinth-plugin-test-support = {{ path = "{support}" }}
serde_json = "1"

# The same release profile as plinth's workspace, so a build that shares plinth's
# target directory reuses its compiled dependencies.
[profile.release]
debug = false
codegen-units = 16

# A standalone crate, not part of any enclosing workspace.
[workspace]
"#,
            sdk = sdk.display(),
            support = checkout.join("crates/plinth-plugin-test-support").display()
        ),
    )?;
    write(
        "src/lib.rs",
        format!(
            r#"//! `{name}`: a plinth plugin. Add components in `components()`; plinth's
//! `plugins/example` has one of every kind.

use plinth_plugin_sdk::{{export_plugin, Component, Error, Plugin}};
use schemars::JsonSchema;
use serde::{{Deserialize, Serialize}};

/// What the stage reads from each record (its schema comes from this type).
#[derive(Deserialize, JsonSchema)]
pub struct Input {{
    pub text: String,
}}

/// What it adds to each record it keeps.
#[derive(Serialize, JsonSchema)]
pub struct Output {{
    pub length: usize,
}}

/// Replace with your stage: adds each text's length in characters, rejects empty ones.
pub fn length(r: Input) -> Result<Output, Error> {{
    match r.text.chars().count() {{
        0 => Err("the text is empty".into()),
        n => Ok(Output {{ length: n }}),
    }}
}}

pub struct {ty};

impl Plugin for {ty} {{
    fn components(&self) -> Vec<Component> {{
        vec![Component::stage_fn("length", "adds each text's length in characters", length)]
    }}
}}

export_plugin!(id: "{name}", version: env!("CARGO_PKG_VERSION"), create: {ty});

#[cfg(test)]
mod tests {{
    use plinth_plugin_test_support::{{added, PluginTest}};
    use serde_json::json;

    #[test]
    fn length_counts_characters_and_rejects_empty_texts() {{
        let t = PluginTest::new("{name}", super::{ty}).unwrap();
        let out = t.run_stage("length", json!({{}}), vec![json!({{"text": "héllo"}}), json!({{"text": ""}})]).unwrap();
        assert_eq!(added(&out[0]).unwrap()["length"], 5);
        assert_eq!(added(&out[1]), Err("the text is empty"));
    }}
}}
"#,
            ty = type_name(name)
        ),
    )?;
    write(
        "README.md",
        format!(
            "# {name}\n\nA plinth plugin. It needs no libtorch (tensor modules come from the separate\n`plinth-plugin-tensors` crate). Test and build it with plinth's environment:\n\n```sh\nsource {env} && cargo test && cargo build --release\n```\n\nThat puts `lib{lib}.so` in plinth's target folder, next to the `plinth` binary, where\n`plinth plugins list` finds it. To keep it elsewhere, copy it into a folder listed in\n`configs/plugins.toml` or `$PLINTH_PLUGIN_PATH` (not writable by other users).\n",
            env = checkout.join("scripts/env.sh").display()
        ),
    )?;
    // The checkout's lock file pins the same dependency versions as plinth's own build.
    let lock = checkout.join("Cargo.lock");
    if lock.exists() {
        std::fs::copy(&lock, root.join("Cargo.lock")).with_context(|| format!("copying {}", lock.display()))?;
    }
    write(".gitignore", "/target\n".to_string())?;
    Ok(root)
}

fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<String>()
        + "Plugin"
}
