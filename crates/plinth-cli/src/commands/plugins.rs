//! `plinth plugins list|inspect|new`, and the plugin host every command that needs plugins uses.

use anyhow::Result;

use crate::cli::PluginsCommand;
use crate::scaffold;

/// The plugins config a command reads unless told otherwise.
pub const DEFAULT_PLUGINS_CONFIG: &str = "configs/plugins.toml";

/// Every plugin in the default search path, as plugin data for training.
pub fn plugin_data() -> Result<plinth_plugin_host::PluginHost> {
    let mut host = plugin_host(std::path::Path::new(DEFAULT_PLUGINS_CONFIG))?;
    for (path, result) in host.discover() {
        if let Err(e) = result {
            tracing::warn!("skipping {}: {e}", path.display());
        }
    }
    Ok(host)
}

pub fn plugin_host(config: &std::path::Path) -> Result<plinth_plugin_host::PluginHost> {
    use plinth_plugin_host::HostConfig;
    let mut cfg = if config.exists() || config != std::path::Path::new(DEFAULT_PLUGINS_CONFIG) {
        HostConfig::from_file(config)?
    } else {
        HostConfig::default()
    };
    cfg = cfg.with_env();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(std::path::Path::to_path_buf)) {
        cfg.search_paths.push(dir);
    }
    Ok(plinth_plugin_host::PluginHost::new(cfg))
}

pub fn plugins(config: &std::path::Path, command: PluginsCommand) -> Result<()> {
    if let PluginsCommand::New { name, dir } = &command {
        let root = scaffold::new_plugin(name, dir.as_deref())?;
        println!("wrote plugin crate {} (see its README.md to build it)", root.display());
        return Ok(());
    }
    let mut host = plugin_host(config)?;
    let found = host.discover();
    match command {
        PluginsCommand::List => {
            if found.is_empty() {
                println!("no plugin files in {:?}", host.config().search_paths);
            }
            for (path, result) in &found {
                match result {
                    Ok(p) => println!(
                        "{:<12} {:<8} ABI {}.{}  {} components  {}",
                        p.id,
                        p.version,
                        plinth_plugin_host::abi_major(),
                        p.negotiated_minor,
                        p.components.len(),
                        p.path.display()
                    ),
                    Err(e) => println!(
                        "{:<12} refused: {e}",
                        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                    ),
                }
            }
            Ok(())
        }
        PluginsCommand::New { .. } => Ok(()),
        PluginsCommand::Inspect { id } => {
            let p = host.get(&id)?;
            println!("plugin       {} {}", p.id, p.version);
            println!("file         {}", p.path.display());
            println!("sha256       {}", p.sha256);
            println!(
                "ABI          built for {}.{}, negotiated {}.{}",
                plinth_plugin_host::abi_major(),
                p.built_minor,
                plinth_plugin_host::abi_major(),
                p.negotiated_minor
            );
            println!("libtorch     {}", if p.fingerprint.is_empty() { "not linked" } else { &p.fingerprint });
            println!("poisoned     {}", p.is_poisoned());
            println!("components");
            for c in &p.components {
                let threads = if c.sync {
                    "Send+Sync"
                } else if c.send {
                    "Send (calls serialised)"
                } else {
                    "host thread only"
                };
                println!("  {:<10} {:<14} {}  [{threads}]", c.spec.role(), c.name, c.description);
                if let Some(detail) = describe_spec(&c.spec) {
                    println!("             {detail}");
                }
            }
            Ok(())
        }
    }
}

/// One line on what a component declares, for `plinth plugins inspect`.
fn describe_spec(spec: &plinth_plugin_protocol::ComponentSpec) -> Option<String> {
    use plinth_plugin_protocol::{ComponentSpec, Schema, TokenizerSpec};
    let fields = |s: &Schema| {
        s.iter().map(|(k, t)| format!("{k}: {}", format!("{t:?}").to_lowercase())).collect::<Vec<_>>().join(", ")
    };
    match spec {
        ComponentSpec::Stage(s) => {
            let mut line = format!("reads {{{}}}", fields(&s.requires));
            if !s.optional.is_empty() {
                line.push_str(&format!(", optionally {{{}}}", fields(&s.optional)));
            }
            line.push_str(&format!(", adds {{{}}}", fields(&s.adds)));
            let params = s.params.get("properties").and_then(|p| p.as_object()).filter(|p| !p.is_empty());
            if let Some(p) = params {
                line.push_str(&format!(", params {{{}}}", p.keys().cloned().collect::<Vec<_>>().join(", ")));
            }
            Some(line)
        }
        ComponentSpec::Task(t) => serde_json::to_string(t).ok().map(|j| format!("spec {j}")),
        ComponentSpec::Tokenizer(TokenizerSpec::Train { vocab_size, min_frequency }) => {
            Some(format!("trained by the host: vocab_size {vocab_size}, min_frequency {min_frequency}"))
        }
        ComponentSpec::Tokenizer(TokenizerSpec::File(json)) => Some(format!("tokenizer.json ({} bytes)", json.len())),
        ComponentSpec::Module(defaults) => Some(format!("defaults {defaults}")),
        ComponentSpec::Domain(d) => {
            let mut line = format!("values: {}", d.value);
            if !d.splits.is_empty() {
                let names: Vec<&str> = d.splits.iter().map(|s| s.name.as_str()).collect();
                line.push_str(&format!(", splits {}", names.join(", ")));
            }
            if let Some(f) = &d.features {
                line.push_str(&format!(", features {} ({} dims)", f.name, f.size));
            }
            Some(line)
        }
        _ => None,
    }
}
