//! Test a plinth plugin from its own tests, the way nushell's
//! `nu-plugin-test-support` tests a nushell plugin: the plugin runs in the test's
//! process, started and called through the SDK's own guarded entry points (the
//! same cross-checks at start, the same encoding, panic containment and
//! poisoning), with only the C pointers left out. No host binary, no libtorch.
//!
//! ```ignore
//! let t = PluginTest::new("molecule", Molecule).expect("starts");
//! let out = t.run_stage("canonicalize", json!({}), vec![json!({"smiles": "OCC"})]).expect("runs");
//! assert_eq!(out[0], Outcome::Add(record(json!({"canonical": "CCO"}))));
//! let rows = t.rows("esol", Split::Test, json!({"split_kind": "random"})).expect("rows");
//! ```
//!
//! [`PluginTest`] implements [`Plugins`], so host code written against the
//! protocol (finetuning's data loading, the pipeline runner) can be driven by it.

use plinth_plugin_protocol::{
    CallError, ComponentSpec, CorpusRequest, FieldType, LabelledExample, Outcome, Plugins, PluginsExt, Record, Split,
    StageSpec, TaskRequest,
};
use plinth_plugin_sdk::{LocalPlugin, LocalStatus, Plugin};
use serde_json::Value;

/// One plugin, started in this process.
#[derive(Debug)]
pub struct PluginTest {
    id: String,
    local: LocalPlugin,
}

impl PluginTest {
    /// Starts `plugin` under `id` (the id its `export_plugin!` gives). Fails as the
    /// host's load would: a panic while starting, a spec that could not be derived,
    /// a task naming a missing or mistyped component.
    pub fn new(id: &str, plugin: impl Plugin) -> Result<Self, LocalStatus> {
        Ok(PluginTest { id: id.into(), local: LocalPlugin::start(plugin)? })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Component names in declaration order.
    pub fn names(&self) -> Vec<&str> {
        self.local.components().into_iter().map(|c| c.1).collect()
    }

    /// A stage's declared schema.
    pub fn stage_spec(&self, stage: &str) -> Result<StageSpec, CallError> {
        match self.spec(&self.id, stage)? {
            ComponentSpec::Stage(s) => Ok(s),
            other => Err(self.error(stage, format!("is a {}, not a stage", other.role()))),
        }
    }

    /// Opens `stage` with `params`, runs `records` through it as one batch and
    /// closes it. Each record must carry the fields the stage requires, with
    /// their types, as a pipeline check would demand.
    pub fn run_stage(&self, stage: &str, params: Value, records: Vec<Value>) -> Result<Vec<Outcome>, CallError> {
        let spec = self.stage_spec(stage)?;
        let mut batch = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let Value::Object(r) = r else { return Err(self.error(stage, format!("record {i} is not an object"))) };
            for (field, ty) in &spec.requires {
                if r.get(field).and_then(FieldType::of) != Some(*ty) {
                    return Err(
                        self.error(stage, format!("record {i} lacks {field:?} as {ty:?}, which the stage requires"))
                    );
                }
            }
            batch.push(r);
        }
        self.open_stage(&self.id, stage, &params)?.run(&batch)
    }

    /// The rows of one split of `task`, from the data component its spec names.
    pub fn rows(&self, task: &str, split: Split, options: Value) -> Result<Vec<LabelledExample>, CallError> {
        let spec = self.task(&self.id, task)?;
        let Value::Object(options) = (if options.is_null() { Value::Object(Default::default()) } else { options })
        else {
            return Err(self.error(task, "options must be an object"));
        };
        let rows = self.ask(&self.id, &spec.data, &TaskRequest { task: task.into(), split, options })?;
        Ok(rows)
    }

    /// The documents of a corpus component.
    pub fn documents(&self, corpus: &str, options: Value) -> Result<Vec<String>, CallError> {
        let Value::Object(options) = (if options.is_null() { Value::Object(Default::default()) } else { options })
        else {
            return Err(self.error(corpus, "options must be an object"));
        };
        self.ask(&self.id, corpus, &CorpusRequest { options })
    }

    /// True once a panic poisoned the plugin.
    pub fn is_poisoned(&self) -> bool {
        self.local.is_poisoned()
    }

    /// Sessions opened and not yet closed.
    pub fn open_sessions(&self) -> usize {
        self.local.open_sessions()
    }

    fn error(&self, component: &str, message: impl Into<String>) -> CallError {
        CallError::new(&self.id, component, message)
    }

    fn index(&self, plugin: &str, component: &str) -> Result<u32, CallError> {
        if plugin != self.id {
            return Err(CallError::new(
                plugin,
                component,
                format!("no plugin {plugin:?} here (testing {:?})", self.id),
            ));
        }
        self.local.index(component).ok_or_else(|| self.error(component, "no component of that name"))
    }
}

fn status(plugin: &str, component: &str, s: LocalStatus) -> CallError {
    CallError::new(plugin, component, s.to_string())
}

impl Plugins for PluginTest {
    fn spec(&self, plugin: &str, component: &str) -> Result<ComponentSpec, CallError> {
        self.index(plugin, component)?;
        self.local
            .components()
            .into_iter()
            .find(|c| c.1 == component)
            .map(|c| c.3.clone())
            .ok_or_else(|| self.error(component, "no spec"))
    }

    fn call(&self, plugin: &str, component: &str, request: &str) -> Result<String, CallError> {
        let i = self.index(plugin, component)?;
        self.local.call(i, request).map_err(|s| status(plugin, component, s))
    }

    fn open(&self, plugin: &str, stage: &str, params: &str) -> Result<u64, CallError> {
        let i = self.index(plugin, stage)?;
        self.local.open(i, params).map_err(|s| status(plugin, stage, s))
    }

    fn process(&self, plugin: &str, stage: &str, session: u64, batch: &str) -> Result<String, CallError> {
        let i = self.index(plugin, stage)?;
        self.local.process(i, session, batch).map_err(|s| status(plugin, stage, s))
    }

    fn close(&self, plugin: &str, stage: &str, session: u64) {
        if let Ok(i) = self.index(plugin, stage) {
            self.local.close(i, session);
        }
    }
}

/// A record from a JSON object literal (anything else gives an empty record).
pub fn record(v: Value) -> Record {
    match v {
        Value::Object(m) => m,
        _ => Record::new(),
    }
}

/// The additions of a kept record, or the reason of a rejected one, as a test wants to compare them.
pub fn added(o: &Outcome) -> Result<&Record, &str> {
    match o {
        Outcome::Add(r) => Ok(r),
        Outcome::Reject(why) => Err(why),
    }
}
