//! Task pipelines: an ordered list of named stages in TOML
//! (`configs/pipelines/*.toml`), each a host operation (read, generate, predict,
//! filter, sort, top-k, dedupe, write) or a stage a plugin exports. Records are
//! JSON objects whose fields are typed; [`Pipeline::load`] checks every stage's
//! inputs against what earlier stages produce before any work is done, and its
//! errors name the line of the offending stage. [`run::run`] executes a checked
//! pipeline: records that fail a stage go to `rejects.jsonl` with the stage and
//! reason, and the run goes on.

pub mod expr;
pub mod run;

use std::path::{Path, PathBuf};

use plinth_plugin_protocol::{Plugins, PluginsExt};
use serde::Deserialize;

pub use plinth_plugin_protocol::{FieldType, Schema};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}:{line}: {message}")]
    At { path: PathBuf, line: usize, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Run(String),
}

/// One `[[stage]]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageToml {
    name: Option<String>,
    op: Option<String>,
    plugin: Option<String>,
    stage: Option<String>,
    params: Option<toml::Table>,
    // read / write
    path: Option<String>,
    format: Option<String>,
    field: Option<String>,
    // generate
    checkpoint: Option<String>,
    samples: Option<usize>,
    prompt: Option<String>,
    prompt_field: Option<String>,
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
    max_tokens: Option<usize>,
    seed: Option<u64>,
    adapter: Option<String>,
    stop: Option<Vec<String>>,
    trim: Option<bool>,
    repetition_penalty: Option<f64>,
    provenance: Option<bool>,
    // collect
    separator: Option<String>,
    // curate
    settings: Option<toml::Table>,
    // predict
    run: Option<String>,
    input: Option<String>,
    output: Option<String>,
    // filter / sort / top_k
    expr: Option<String>,
    by: Option<String>,
    descending: Option<bool>,
    k: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineToml {
    name: String,
    #[serde(default)]
    description: String,
    /// Where results, rejects, summary and report go.
    out_dir: String,
    /// Records per batch for model stages, default 64.
    #[serde(default)]
    batch_size: Option<usize>,
    stage: Vec<toml::Spanned<StageToml>>,
}

/// File formats for `read` and `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
    Lines,
}

/// What a stage does, checked and with its paths resolved.
#[derive(Debug, Clone)]
pub enum Op {
    Read {
        path: PathBuf,
        format: Format,
        field: String,
    },
    Generate {
        checkpoint: PathBuf,
        /// A finetuned generation task whose adapter is applied.
        adapter: Option<PathBuf>,
        samples: usize,
        prompt: String,
        prompt_field: Option<String>,
        field: String,
        sampling: plinth_generate::SamplingConfig,
        /// Strip surrounding whitespace from each text (default); `trim = false`
        /// keeps it, for continuations whose leading newline and indentation matter.
        trim: bool,
        /// Add `provenance`: JSON naming the checkpoint (path and weights SHA-256),
        /// the adapter, the prompt, the seed and the sampling settings of each text.
        provenance: bool,
    },
    Predict {
        run: PathBuf,
        input: String,
        output: String,
        classification: Option<Vec<String>>,
    },
    Filter {
        expr: expr::Expr,
        text: String,
    },
    Sort {
        by: String,
        descending: bool,
    },
    TopK {
        k: usize,
    },
    Dedupe {
        field: String,
    },
    Write {
        path: PathBuf,
        format: Format,
        /// `lines`: the field written, one value per line (default: the record's first field).
        field: Option<String>,
    },
    /// `field` through plinth-curate's stages (rewritten in place; a dropped
    /// record goes to rejects with the stage and reason), duplicates included.
    Curate {
        field: String,
        curator: std::sync::Arc<plinth_curate::Curator>,
    },
    /// All records become one: `field`'s values joined by `separator`, and
    /// `records`, how many were joined.
    Collect {
        field: String,
        separator: String,
    },
    Plugin {
        plugin: String,
        stage: String,
        params: serde_json::Value,
    },
}

/// A checked stage: its name, operation, source line, and the schema after it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub op: Op,
    pub line: usize,
    pub schema_after: Schema,
}

/// A loaded, type-checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    pub out_dir: PathBuf,
    pub batch_size: usize,
    pub stages: Vec<Stage>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn format_of(path: &Path, given: Option<&str>) -> Result<Format, String> {
    let f = given
        .map(str::to_string)
        .unwrap_or_else(|| path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default());
    match f.as_str() {
        "csv" => Ok(Format::Csv),
        "jsonl" | "json" => Ok(Format::Jsonl),
        "lines" | "txt" | "smi" => Ok(Format::Lines),
        other => Err(format!("unknown format {other:?}; use csv, jsonl or lines (or a path ending in one)")),
    }
}

/// Resolves a path in a pipeline file: relative paths are relative to the working directory.
fn resolve(p: &str) -> PathBuf {
    PathBuf::from(p)
}

impl Pipeline {
    /// Reads and checks a pipeline; `plugins` answers plugin stage specs. Nothing runs.
    pub fn load(path: &Path, plugins: &dyn Plugins) -> Result<Self, PipelineError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PipelineError::File { path: path.to_path_buf(), message: e.to_string() })?;
        let doc: PipelineToml = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            PipelineError::At { path: path.to_path_buf(), line, message: e.message().to_string() }
        })?;
        let mut schema = Schema::new();
        let mut stages = Vec::new();
        for (k, spanned) in doc.stage.iter().enumerate() {
            let line = line_of(&text, spanned.span().start);
            let at = |message: String| PipelineError::At { path: path.to_path_buf(), line, message };
            let s = spanned.get_ref();
            let name = s
                .name
                .clone()
                .or_else(|| s.stage.clone())
                .or_else(|| s.op.clone())
                .unwrap_or_else(|| format!("stage{}", k + 1));
            let (op, after) =
                check_stage(s, &schema, k == 0, plugins).map_err(|m| at(format!("stage {name:?}: {m}")))?;
            schema = after;
            stages.push(Stage { name, op, line, schema_after: schema.clone() });
        }
        if stages.is_empty() {
            return Err(PipelineError::File {
                path: path.to_path_buf(),
                message: "a pipeline needs at least one [[stage]]".into(),
            });
        }
        Ok(Pipeline {
            name: doc.name,
            description: doc.description,
            path: path.to_path_buf(),
            out_dir: resolve(&doc.out_dir),
            batch_size: doc.batch_size.unwrap_or(64).max(1),
            stages,
        })
    }
}

fn need<'a, T>(v: &'a Option<T>, key: &str) -> Result<&'a T, String> {
    v.as_ref().ok_or_else(|| format!("needs `{key}`"))
}

fn require(schema: &Schema, field: &str, ty: Option<FieldType>) -> Result<(), String> {
    match (schema.get(field), ty) {
        (None, _) => Err(format!(
            "reads field {field:?}, which no earlier stage provides (fields here: {:?})",
            schema.keys().collect::<Vec<_>>()
        )),
        (Some(t), Some(want)) if *t != want => Err(format!("needs field {field:?} as {want:?} but it is {t:?}")),
        _ => Ok(()),
    }
}

/// Schema of a CSV or JSONL file from its first record (read at check time).
fn file_schema(path: &Path, format: Format, field: &str) -> Result<Schema, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let first = run::parse_records(&text, format, field, 1).map_err(|e| format!("{}: {e}", path.display()))?;
    let first = first.into_iter().next().ok_or_else(|| format!("{} has no records", path.display()))?;
    Ok(first.iter().filter_map(|(k, v)| FieldType::of(v).map(|t| (k.clone(), t))).collect())
}

fn check_stage(s: &StageToml, schema: &Schema, first: bool, plugins: &dyn Plugins) -> Result<(Op, Schema), String> {
    let mut out = schema.clone();
    if let Some(plugin) = &s.plugin {
        if s.op.is_some() {
            return Err("give either `op` (a host operation) or `plugin` + `stage`, not both".into());
        }
        let stage = need(&s.stage, "stage")?.clone();
        let params = match &s.params {
            Some(t) => serde_json::to_value(t).map_err(|e| e.to_string())?,
            None => serde_json::Value::Null,
        };
        // Opening checks the params against the stage's own type, before any work.
        let session = plugins.open_stage(plugin, &stage, &params).map_err(|e| e.message)?;
        let spec = session.spec();
        for (f, t) in &spec.requires {
            require(schema, f, Some(*t)).map_err(|e| format!("plugin stage {plugin}/{stage} {e}"))?;
        }
        for (f, t) in &spec.optional {
            if schema.get(f).is_some_and(|have| have != t) {
                return Err(format!("plugin stage {plugin}/{stage} reads {f:?} as {t:?} but it is {:?}", schema[f]));
            }
        }
        out.extend(spec.adds.iter().map(|(f, t)| (f.clone(), *t)));
        return Ok((Op::Plugin { plugin: plugin.clone(), stage, params }, out));
    }
    let op =
        s.op.as_deref()
            .ok_or("needs `op` (read, generate, predict, filter, sort, top_k, dedupe, write) or `plugin` + `stage`")?;
    let source_only = |name: &str| {
        if !first {
            Err(format!("`{name}` without an input field starts a pipeline; put it first"))
        } else {
            Ok(())
        }
    };
    let op = match op {
        "read" => {
            source_only("read")?;
            let path = resolve(need(&s.path, "path")?);
            let format = format_of(&path, s.format.as_deref())?;
            let field = s.field.clone().unwrap_or_else(|| "text".into());
            out = file_schema(&path, format, &field)?;
            Op::Read { path, format, field }
        }
        "generate" => {
            let field = s.field.clone().unwrap_or_else(|| "text".into());
            if let Some(pf) = &s.prompt_field {
                require(schema, pf, Some(FieldType::String))?;
            } else {
                source_only("generate")?;
            }
            let sampling = plinth_generate::SamplingConfig {
                max_new_tokens: s.max_tokens.unwrap_or(128),
                temperature: s.temperature.unwrap_or(1.0),
                top_k: s.top_k.unwrap_or(0),
                top_p: s.top_p.unwrap_or(1.0),
                seed: s.seed.unwrap_or(0),
                stop: s.stop.clone().unwrap_or_default(),
                repetition_penalty: s.repetition_penalty.unwrap_or(1.0),
                ..Default::default()
            };
            out.insert(field.clone(), FieldType::String);
            if s.provenance == Some(true) {
                out.insert("provenance".into(), FieldType::String);
            }
            let adapter = match &s.adapter {
                Some(a) => {
                    let dir = plinth_finetune::task::resolve_dir(&resolve(a)).map_err(|e| e.to_string())?;
                    let meta = plinth_finetune::task::read_meta(&dir).map_err(|e| e.to_string())?;
                    if meta.spec.kind != plinth_plugin_protocol::TaskKind::Generation {
                        return Err(format!("adapter {a} is a {:?} task, not a generation task", meta.spec.kind));
                    }
                    Some(dir)
                }
                None => None,
            };
            Op::Generate {
                adapter,
                checkpoint: resolve(need(&s.checkpoint, "checkpoint")?),
                samples: s.samples.unwrap_or(1),
                prompt: s.prompt.clone().unwrap_or_default(),
                prompt_field: s.prompt_field.clone(),
                field,
                sampling,
                trim: s.trim.unwrap_or(true),
                provenance: s.provenance.unwrap_or(false),
            }
        }
        "predict" => {
            let run = resolve(need(&s.run, "run")?);
            let input = need(&s.input, "input")?.clone();
            require(schema, &input, Some(FieldType::String))?;
            let dir = plinth_finetune::task::resolve_dir(&run).map_err(|e| e.to_string())?;
            let meta = plinth_finetune::task::read_meta(&dir).map_err(|e| e.to_string())?;
            let output = s.output.clone().unwrap_or_else(|| meta.task.clone());
            let classification = match meta.spec.kind {
                plinth_plugin_protocol::TaskKind::Generation => {
                    return Err(format!("{} is a generation task; use it as a generate stage's `adapter`", run.display()));
                }
                plinth_plugin_protocol::TaskKind::Regression => {
                    out.insert(output.clone(), FieldType::Number);
                    None
                }
                plinth_plugin_protocol::TaskKind::Classification => {
                    out.insert(output.clone(), FieldType::String);
                    out.insert(format!("{output}_probability"), FieldType::Number);
                    Some(meta.spec.labels.clone())
                }
            };
            Op::Predict { run, input, output, classification }
        }
        "filter" => {
            let text = need(&s.expr, "expr")?.clone();
            let e = expr::parse(&text).map_err(|m| format!("expr {text:?}: {m}"))?;
            if e.check(schema).map_err(|m| format!("expr {text:?}: {m}"))? != FieldType::Bool {
                return Err(format!("expr {text:?} is not a bool expression"));
            }
            Op::Filter { expr: e, text }
        }
        "sort" => {
            let by = need(&s.by, "by")?.clone();
            require(schema, &by, None)?;
            Op::Sort { by, descending: s.descending.unwrap_or(false) }
        }
        "top_k" => Op::TopK { k: *need(&s.k, "k")? },
        "dedupe" => {
            let field = need(&s.field, "field")?.clone();
            require(schema, &field, None)?;
            Op::Dedupe { field }
        }
        "write" => {
            let path = PathBuf::from(need(&s.path, "path")?);
            let format = format_of(&path, s.format.as_deref())?;
            if let Some(f) = &s.field {
                if format != Format::Lines {
                    return Err("`field` picks what a `lines` write writes; csv and jsonl write every field".into());
                }
                require(schema, f, None)?;
            }
            Op::Write { format, path, field: s.field.clone() }
        }
        "curate" => {
            let field = need(&s.field, "field")?.clone();
            require(schema, &field, Some(FieldType::String))?;
            let settings = s.settings.clone().unwrap_or_default();
            let cfg: plinth_curate::CurateConfig =
                settings.try_into().map_err(|e: toml::de::Error| format!("settings: {}", e.message()))?;
            let curator =
                plinth_curate::Curator::new(cfg, &plinth_data::cache_dir()).map_err(|e| e.to_string())?;
            Op::Curate { field, curator: std::sync::Arc::new(curator) }
        }
        "collect" => {
            let field = need(&s.field, "field")?.clone();
            require(schema, &field, Some(FieldType::String))?;
            out = Schema::from([(field.clone(), FieldType::String), ("records".to_string(), FieldType::Number)]);
            Op::Collect { field, separator: s.separator.clone().unwrap_or_else(|| "\n".into()) }
        }
        other => return Err(format!("unknown op {other:?}; host operations are read, generate, predict, filter, sort, top_k, dedupe, curate, collect, write (or use `plugin` + `stage`)")),
    };
    Ok((op, out))
}
