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
build = "build.rs"

[lib]
name = "{lib}"
crate-type = ["cdylib", "rlib"]

[dependencies]
plinth-plugin-sdk = {{ path = "{sdk}" }}

# The same release profile as plinth's workspace, so a build that shares plinth's
# target directory reuses its compiled libtorch wrapper.
[profile.release]
debug = false
codegen-units = 16

# A standalone crate, not part of any enclosing workspace.
[workspace]
"#,
            sdk = sdk.display()
        ),
    )?;
    write("build.rs", include_str!("../../../build/torch_rpath.rs").to_string())?;
    write(
        "src/lib.rs",
        format!(
            r#"//! `{name}`: a plinth plugin. Add components in `components()`; see
//! plinth's `plugins/example` for one of every kind.

use plinth_plugin_sdk::{{export_plugin, Component, Plugin}};

pub struct {ty};

/// Returns the record unchanged: replace with your stage.
pub fn echo(record: &str) -> Result<String, String> {{
    Ok(record.to_string())
}}

impl Plugin for {ty} {{
    fn components(&self) -> Vec<Component> {{
        vec![Component::stage("echo", "returns each record unchanged", echo)]
    }}
}}

export_plugin!(id: "{name}", version: env!("CARGO_PKG_VERSION"), create: {ty});

#[cfg(test)]
mod tests {{
    #[test]
    fn echo_returns_the_record() {{
        assert_eq!(super::echo("{{\"a\": 1}}").unwrap(), "{{\"a\": 1}}");
    }}
}}
"#,
            ty = type_name(name)
        ),
    )?;
    write(
        "README.md",
        format!(
            "# {name}\n\nA plinth plugin. Build it with plinth's environment (PyTorch 2.11.0 from plinth's `.venv`):\n\n```sh\nsource {env} && cargo build --release\n```\n\nThat puts `lib{lib}.so` in plinth's target folder, next to the `plinth` binary, where\n`plinth plugins list` finds it. To keep it elsewhere, copy it into a folder listed in\n`configs/plugins.toml` or `$PLINTH_PLUGIN_PATH` (not writable by other users).\n",
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
