//! What host code asks of loaded plugins. [`Plugins`] is the raw, object-safe
//! surface (encoded requests in, encoded replies out); [`PluginsExt`] puts the
//! typed protocol on top of it, so callers never encode or parse by hand.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{ComponentSpec, InputCheck, Outcome, Record, Request, StageBatch, StageSpec, TaskSpec};

/// A plugin call that failed: which component, and why (the plugin's own words,
/// or the host's when the plugin could not be reached).
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub plugin: String,
    pub component: String,
    pub message: String,
}

impl CallError {
    pub fn new(plugin: &str, component: &str, message: impl Into<String>) -> Self {
        CallError { plugin: plugin.into(), component: component.into(), message: message.into() }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: {}", self.plugin, self.component, self.message)
    }
}

impl std::error::Error for CallError {}

/// Loaded plugins as host code reaches them. Requests and replies are the JSON
/// encodings of this crate's types; use [`PluginsExt`] rather than these methods.
pub trait Plugins: fmt::Debug + Send + Sync {
    /// What a component declares.
    fn spec(&self, plugin: &str, component: &str) -> Result<ComponentSpec, CallError>;
    /// A data component's reply to one request.
    fn call(&self, plugin: &str, component: &str, request: &str) -> Result<String, CallError>;
    /// Opens a stage with its params (JSON); the plugin checks them here.
    fn open(&self, plugin: &str, stage: &str, params: &str) -> Result<u64, CallError>;
    /// One [`StageBatch`] through an open stage; the reply is one [`Outcome`] per record.
    fn process(&self, plugin: &str, stage: &str, session: u64, batch: &str) -> Result<String, CallError>;
    /// Ends a session.
    fn close(&self, plugin: &str, stage: &str, session: u64);
}

/// The typed protocol over any [`Plugins`].
pub trait PluginsExt: Plugins {
    /// Sends a typed request; the request's type fixes the reply's.
    fn ask<R: Request>(&self, plugin: &str, component: &str, request: &R) -> Result<R::Reply, CallError> {
        let text = encode(plugin, component, request)?;
        let reply = self.call(plugin, component, &text)?;
        serde_json::from_str(&reply).map_err(|e| {
            CallError::new(plugin, component, format!("answered something that is not a {} reply: {e}", R::ROLE))
        })
    }

    /// A task component's spec, checked.
    fn task(&self, plugin: &str, task: &str) -> Result<TaskSpec, CallError> {
        match self.spec(plugin, task)? {
            ComponentSpec::Task(spec) => {
                spec.validate().map_err(|e| CallError::new(plugin, task, e.0))?;
                Ok(*spec)
            }
            other => Err(CallError::new(plugin, task, format!("is a {}, not a task", other.role()))),
        }
    }

    /// Opens a stage: its params are checked once, here.
    fn open_stage(
        &self,
        plugin: &str,
        stage: &str,
        params: &serde_json::Value,
    ) -> Result<StageSession<'_, Self>, CallError> {
        let spec = match self.spec(plugin, stage)? {
            ComponentSpec::Stage(spec) => spec,
            other => return Err(CallError::new(plugin, stage, format!("is a {}, not a stage", other.role()))),
        };
        let params = if params.is_null() { serde_json::json!({}) } else { params.clone() };
        let id = self.open(plugin, stage, &encode(plugin, stage, &params)?)?;
        Ok(StageSession { plugins: self, plugin: plugin.into(), stage: stage.into(), id, spec })
    }

    /// Runs a task's input check on each input: `None` for the accepted, the
    /// stage's reason for the rejected.
    fn check_inputs(
        &self,
        plugin: &str,
        check: &InputCheck,
        inputs: &[String],
    ) -> Result<Vec<Option<String>>, CallError> {
        let session = self.open_stage(plugin, &check.stage, &serde_json::Value::Null)?;
        let records: Vec<Record> = inputs
            .iter()
            .map(|i| Record::from_iter([(check.field.clone(), serde_json::Value::from(i.as_str()))]))
            .collect();
        Ok(session
            .run(&records)?
            .into_iter()
            .map(|o| match o {
                Outcome::Add(_) => None,
                Outcome::Reject(reason) => Some(reason),
            })
            .collect())
    }
}

impl<P: Plugins + ?Sized> PluginsExt for P {}

/// An open stage; closed when dropped.
pub struct StageSession<'a, P: Plugins + ?Sized> {
    plugins: &'a P,
    plugin: String,
    stage: String,
    id: u64,
    spec: StageSpec,
}

impl<P: Plugins + ?Sized> fmt::Debug for StageSession<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StageSession({}/{} #{})", self.plugin, self.stage, self.id)
    }
}

impl<P: Plugins + ?Sized> StageSession<'_, P> {
    pub fn spec(&self) -> &StageSpec {
        &self.spec
    }

    /// One batch through the stage: each record is cut to the fields the stage
    /// reads before it crosses, and one outcome comes back per record.
    pub fn run(&self, records: &[Record]) -> Result<Vec<Outcome>, CallError> {
        let reads: Vec<&String> = self.spec.reads().collect();
        let batch = StageBatch {
            records: records
                .iter()
                .map(|r| reads.iter().filter_map(|&k| r.get(k).map(|v| (k.clone(), v.clone()))).collect())
                .collect(),
        };
        let text = encode(&self.plugin, &self.stage, &batch)?;
        let reply = self.plugins.process(&self.plugin, &self.stage, self.id, &text)?;
        let outcomes: Vec<Outcome> = serde_json::from_str(&reply).map_err(|e| {
            CallError::new(&self.plugin, &self.stage, format!("answered something that is not a list of outcomes: {e}"))
        })?;
        if outcomes.len() != records.len() {
            return Err(CallError::new(
                &self.plugin,
                &self.stage,
                format!("answered {} outcomes for {} records", outcomes.len(), records.len()),
            ));
        }
        Ok(outcomes)
    }
}

impl<P: Plugins + ?Sized> Drop for StageSession<'_, P> {
    fn drop(&mut self) {
        self.plugins.close(&self.plugin, &self.stage, self.id);
    }
}

fn encode<T: Serialize>(plugin: &str, component: &str, value: &T) -> Result<String, CallError> {
    serde_json::to_string(value)
        .map_err(|e| CallError::new(plugin, component, format!("cannot encode the request: {e}")))
}

/// Decodes a typed value from its JSON encoding (for implementations of [`Plugins`]).
pub fn decode<T: DeserializeOwned>(plugin: &str, component: &str, text: &str) -> Result<T, CallError> {
    serde_json::from_str(text).map_err(|e| CallError::new(plugin, component, e.to_string()))
}
