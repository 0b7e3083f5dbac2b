//! Components as plugin authors write them: typed constructors for each role,
//! erased here into the handful of calls the ABI carries.

use std::any::Any;
use std::marker::PhantomData;

use plinth_abi::ComponentKind;
use plinth_plugin_protocol::{
    ComponentSpec, CorpusRequest, DomainRequest, DomainSpec, DomainValue, GuideRequest, LabelledExample, Metrics,
    Outcome, Record, ScoreRequest, Split, StageBatch, StageSpec, Step, TaskRequest, TaskSpec, TokenizerSpec,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;

/// A pipeline stage with typed params, input and output. The host opens it once
/// per pipeline stage with the stage's `params` (checked at `plinth check`, so a
/// wrong type is refused with its TOML line), then sends batches of records; each
/// record is read as `Input`, and `Output`'s fields are added to it. The record
/// schema the host type-checks pipelines with is derived from `Input` and `Output`.
pub trait Stage: Send + Sync + 'static {
    /// What `params = { ... }` in a pipeline may hold; [`NoParams`] for none.
    type Params: DeserializeOwned + JsonSchema;
    /// The fields read from each record (an `Option` field is optional).
    type Input: DeserializeOwned + JsonSchema;
    /// The fields added to each record kept.
    type Output: Serialize + JsonSchema;
    /// What `open` prepares for the records (the params, a loaded file...).
    type State: Send + Sync + 'static;

    fn open(&self, params: Self::Params) -> Result<Self::State, Error>;

    /// One record: its additions, or `Err` to reject it with that reason.
    fn process(&self, state: &Self::State, input: Self::Input) -> Result<Self::Output, Error>;
}

/// Params of a stage that takes none: any key given is refused.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// A tensor module behind raw libtorch handles (`at::Tensor*`). Implemented by
/// `plinth-plugin-tensors` from a safe `TensorModule`; not meant to be written by
/// hand. Modules are flagged `SEND` only and the host serialises calls into them.
///
/// # Safety
/// Every handle `forward` returns and `parameters` writes must be a new, live
/// `at::Tensor*` of the libtorch the plugin's header names, owned by the caller
/// from then on: the host takes ownership of them.
pub unsafe trait RawModule: Send {
    /// Runs the module on the host's tensor.
    ///
    /// # Safety
    /// `input` must be a live `at::Tensor*` of the same libtorch, borrowed for the
    /// call. The returned handle is new and owned by the caller.
    unsafe fn forward(&self, input: *mut std::ffi::c_void) -> Result<*mut std::ffi::c_void, Error>;
    /// Writes new handles on the first `out.len()` trainable parameters (each then
    /// owned by the caller) and returns how many there are in all.
    fn parameters(&self, out: &mut [*mut std::ffi::c_void]) -> usize;
}

pub(crate) type CallFn = Box<dyn Fn(&str) -> Result<String, Error> + Send + Sync>;

/// A stage with its types erased: params and batches arrive encoded.
pub(crate) trait ErasedStage: Send + Sync {
    fn open(&self, params: &str) -> Result<Box<dyn Any + Send + Sync>, Error>;
    fn process(&self, state: &(dyn Any + Send + Sync), batch: &str) -> Result<String, Error>;
}

pub(crate) enum Behaviour {
    Spec,
    Call(CallFn),
    Stage(Box<dyn ErasedStage>),
    Module(Box<dyn RawModule>),
}

/// One component a plugin offers.
pub struct Component {
    pub(crate) kind: ComponentKind,
    pub(crate) name: String,
    pub(crate) description: String,
    /// The declared spec, or why it could not be derived (reported when the plugin loads).
    pub(crate) spec: Result<ComponentSpec, String>,
    pub(crate) behaviour: Behaviour,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Component({:?} {})", self.kind, self.name)
    }
}

impl Component {
    /// A tokenizer: a `tokenizer.json` or a recipe the host trains.
    pub fn tokenizer(name: &str, description: &str, spec: TokenizerSpec) -> Self {
        Self::new(ComponentKind::Tokenizer, name, description, Ok(ComponentSpec::Tokenizer(spec)), Behaviour::Spec)
    }

    /// A finetuning task; the components its spec names (data, prompt stage,
    /// scorer, guide, checks) must be in the same plugin, with those roles.
    pub fn task(name: &str, description: &str, spec: TaskSpec) -> Self {
        Self::new(ComponentKind::Task, name, description, Ok(ComponentSpec::Task(Box::new(spec))), Behaviour::Spec)
    }

    /// Documents for pretraining; `Options` are read from the config's `request`.
    pub fn corpus<O, F>(name: &str, description: &str, f: F) -> Self
    where
        O: DeserializeOwned,
        F: Fn(O) -> Result<Vec<String>, Error> + Send + Sync + 'static,
    {
        let call = move |text: &str| -> Result<String, Error> {
            let req: CorpusRequest = decode(text, "a corpus request")?;
            let options = decode_value(serde_json::Value::Object(req.options), "the corpus options")?;
            encode(&f(options)?)
        };
        Self::new(ComponentKind::Data, name, description, Ok(ComponentSpec::Corpus), Behaviour::Call(Box::new(call)))
    }

    /// Labelled rows of a task's split; `Options` are the finetuning config's
    /// extra request fields (`split_kind`, `max`...).
    pub fn task_data<O, F>(name: &str, description: &str, f: F) -> Self
    where
        O: DeserializeOwned,
        F: Fn(&str, Split, O) -> Result<Vec<LabelledExample>, Error> + Send + Sync + 'static,
    {
        let call = move |text: &str| -> Result<String, Error> {
            let req: TaskRequest = decode(text, "a task data request")?;
            let options = decode_value(serde_json::Value::Object(req.options), "the task's request options")?;
            encode(&f(&req.task, req.split, options)?)
        };
        Self::new(ComponentKind::Data, name, description, Ok(ComponentSpec::TaskData), Behaviour::Call(Box::new(call)))
    }

    /// A domain for user data files (`domain = "PLUGIN"` on an input column): one
    /// [`DomainValue`] per value, in order; the SDK checks the count and that an
    /// asked-for split is one the spec lists.
    pub fn domain<F>(name: &str, description: &str, spec: DomainSpec, f: F) -> Self
    where
        F: Fn(DomainRequest) -> Result<Vec<DomainValue>, Error> + Send + Sync + 'static,
    {
        let splits: Vec<String> = spec.splits.iter().map(|s| s.name.clone()).collect();
        let call = move |text: &str| -> Result<String, Error> {
            let req: DomainRequest = decode(text, "a domain request")?;
            if let Some(split) = req.split.as_ref().filter(|s| !splits.contains(&s.name)) {
                return Err(Error::new(format!("this domain has no split {:?}; it offers {splits:?}", split.name)));
            }
            let n = req.values.len();
            let out = f(req)?;
            if out.len() != n {
                return Err(Error::new(format!("the domain answered {} values for {n}", out.len())));
            }
            encode(&out)
        };
        let spec = Ok(ComponentSpec::Domain(spec));
        Self::new(ComponentKind::Data, name, description, spec, Behaviour::Call(Box::new(call)))
    }

    /// Metrics of scored completions (a prompted task's `scorer`).
    pub fn scorer<F>(name: &str, description: &str, f: F) -> Self
    where
        F: Fn(ScoreRequest) -> Result<Metrics, Error> + Send + Sync + 'static,
    {
        let call = move |text: &str| encode(&f(decode(text, "a score request")?)?);
        Self::new(ComponentKind::Data, name, description, Ok(ComponentSpec::Scorer), Behaviour::Call(Box::new(call)))
    }

    /// What a completion may continue with (a prompted task's `guide`).
    pub fn guide<F>(name: &str, description: &str, f: F) -> Self
    where
        F: Fn(GuideRequest) -> Result<Step, Error> + Send + Sync + 'static,
    {
        let call = move |text: &str| encode(&f(decode(text, "a guide request")?)?);
        Self::new(ComponentKind::Data, name, description, Ok(ComponentSpec::Guide), Behaviour::Call(Box::new(call)))
    }

    /// A plugin-specific question with a typed request and reply.
    pub fn query<Q, R, F>(name: &str, description: &str, f: F) -> Self
    where
        Q: DeserializeOwned,
        R: Serialize,
        F: Fn(Q) -> Result<R, Error> + Send + Sync + 'static,
    {
        let call = move |text: &str| encode(&f(decode(text, "its request")?)?);
        Self::new(ComponentKind::Data, name, description, Ok(ComponentSpec::Query), Behaviour::Call(Box::new(call)))
    }

    /// A pipeline stage; its record schema is derived from `S::Input` and `S::Output`.
    pub fn stage<S: Stage>(name: &str, description: &str, stage: S) -> Self {
        let spec = stage_spec::<S>().map(ComponentSpec::Stage);
        Self::new(ComponentKind::Stage, name, description, spec, Behaviour::Stage(Box::new(Typed(stage))))
    }

    /// A stage without params, from a function of one record.
    pub fn stage_fn<I, O, E, F>(name: &str, description: &str, f: F) -> Self
    where
        I: DeserializeOwned + JsonSchema + 'static,
        O: Serialize + JsonSchema + 'static,
        E: Into<Error> + 'static,
        F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
    {
        Self::stage(name, description, FnStage { f, types: PhantomData })
    }

    /// An adapter or head module with JSON defaults, behind raw handles: use
    /// `plinth_plugin_tensors::module`, which builds one from a safe `TensorModule`.
    #[doc(hidden)]
    pub fn module_raw(name: &str, description: &str, defaults: serde_json::Value, m: impl RawModule + 'static) -> Self {
        let spec = Ok(ComponentSpec::Module(defaults));
        Self::new(ComponentKind::Module, name, description, spec, Behaviour::Module(Box::new(m)))
    }

    fn new(
        kind: ComponentKind,
        name: &str,
        description: &str,
        spec: Result<ComponentSpec, String>,
        behaviour: Behaviour,
    ) -> Self {
        Component { kind, name: name.into(), description: description.into(), spec, behaviour }
    }
}

fn stage_spec<S: Stage>() -> Result<StageSpec, String> {
    let (requires, optional) = crate::schema::fields::<S::Input>()?;
    let adds = crate::schema::output_fields::<S::Output>()?;
    Ok(StageSpec { requires, optional, adds, params: crate::schema::json_schema::<S::Params>() })
}

struct Typed<S>(S);

impl<S: Stage> ErasedStage for Typed<S> {
    fn open(&self, params: &str) -> Result<Box<dyn Any + Send + Sync>, Error> {
        let params: S::Params = decode(params, "the stage's params")?;
        Ok(Box::new(self.0.open(params)?))
    }

    fn process(&self, state: &(dyn Any + Send + Sync), batch: &str) -> Result<String, Error> {
        let state = state.downcast_ref::<S::State>().ok_or("session belongs to another stage")?;
        let batch: StageBatch = decode(batch, "a batch of records")?;
        let outcomes: Vec<Outcome> = batch
            .records
            .into_iter()
            .map(|record| {
                let input: S::Input = match serde_json::from_value(serde_json::Value::Object(record)) {
                    Ok(i) => i,
                    Err(e) => {
                        return Outcome::Reject(format!(
                            "record does not fit the stage's input: {}",
                            without_position(&e)
                        ))
                    }
                };
                match self.0.process(state, input).and_then(|out| to_record(&out)) {
                    Ok(added) => Outcome::Add(added),
                    Err(e) => Outcome::Reject(e.0),
                }
            })
            .collect();
        encode(&outcomes)
    }
}

struct FnStage<F, I, O, E> {
    f: F,
    types: PhantomData<fn(I) -> (O, E)>,
}

impl<I, O, E, F> Stage for FnStage<F, I, O, E>
where
    I: DeserializeOwned + JsonSchema + 'static,
    O: Serialize + JsonSchema + 'static,
    E: Into<Error> + 'static,
    F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
{
    type Params = NoParams;
    type Input = I;
    type Output = O;
    type State = ();

    fn open(&self, _: NoParams) -> Result<(), Error> {
        Ok(())
    }

    fn process(&self, _: &(), input: I) -> Result<O, Error> {
        (self.f)(input).map_err(Into::into)
    }
}

fn to_record<T: Serialize>(value: &T) -> Result<Record, Error> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(other) => Err(Error::new(format!("a stage's output must be a struct of fields, not {other}"))),
        Err(e) => Err(Error::new(format!("cannot encode the stage's output: {e}"))),
    }
}

fn decode<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::new(format!("{what}: {}", without_position(&e))))
}

fn decode_value<T: DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| Error::new(format!("{what}: {}", without_position(&e))))
}

/// A decoding error without its position in the encoded JSON, which the user
/// never sees (the host names the TOML line instead).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) if e.line() > 0 => message.to_string(),
        _ => text,
    }
}

fn encode<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::new(format!("cannot encode the reply: {e}")))
}

/// Checks that what a plugin's task specs name exists in the plugin with the right
/// role and record fields; the message names the task and what to fix.
pub(crate) fn check_components(components: &[Component], links_libtorch: bool) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(m) = components.iter().find(|c| c.kind == ComponentKind::Module).filter(|_| !links_libtorch) {
        problems.push(format!(
            "module {} exchanges tensors, so the plugin must say which libtorch it links: \
             export_plugin!(..., libtorch: plinth_plugin_tensors::LIBTORCH)",
            m.name
        ));
    }
    for c in components {
        if let Err(e) = &c.spec {
            problems.push(format!("component {}: {e}", c.name));
        }
    }
    let spec = |name: &str| components.iter().find(|c| c.name == name).and_then(|c| c.spec.as_ref().ok());
    let stage = |name: &str| match spec(name) {
        Some(ComponentSpec::Stage(s)) => Some(s),
        _ => None,
    };
    for c in components {
        let Ok(ComponentSpec::Task(task)) = &c.spec else { continue };
        let mut want = |name: &str, role: &str, ok: bool| {
            if !ok {
                let found = spec(name).map_or("nothing".to_string(), |s| format!("a {}", s.role()));
                problems.push(format!("task {} names {name:?} as its {role}, but that is {found}", c.name));
            }
        };
        want(&task.data, "task data", matches!(spec(&task.data), Some(ComponentSpec::TaskData)));
        if let Some(check) = &task.input_check {
            let ok = stage(&check.stage).is_some_and(|s| s.requires.keys().all(|k| *k == check.field));
            want(&check.stage, &format!("input check (a stage reading only {:?})", check.field), ok);
        }
        if let Some(cs) = &task.completion {
            let reads = |s: &StageSpec, f: &[&str]| s.requires.keys().all(|k| f.contains(&k.as_str()));
            let ok = stage(&cs.prompt_stage).is_some_and(|s| reads(s, &["input"]) && s.adds.contains_key("prompt"));
            want(&cs.prompt_stage, "prompt stage (reading `input`, adding `prompt`)", ok);
            want(&cs.scorer, "scorer", matches!(spec(&cs.scorer), Some(ComponentSpec::Scorer)));
            if let Some(g) = &cs.guide {
                want(g, "guide", matches!(spec(g), Some(ComponentSpec::Guide)));
            }
            if let Some(check) = &cs.output_check {
                let ok = stage(check).is_some_and(|s| reads(s, &["prompt", "completion"]));
                want(check, "output check (a stage reading `prompt` and `completion`)", ok);
            }
        }
    }
    let mut names: Vec<&str> = components.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    for w in names.windows(2).filter(|w| w[0] == w[1]) {
        problems.push(format!("two components are named {:?}", w[0]));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
