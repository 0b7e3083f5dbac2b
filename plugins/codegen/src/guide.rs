//! Catalogue-guided decoding of a task (the `guide` component): before every
//! token the host asks what may come next, and this answers from the text so
//! far and the module catalogue, so a completion is one task mapping whose
//! module is a catalogue module, whose argument keys are documented options of
//! it and which does not end before the required ones are given.
//!
//! * The module is chosen first, as a `pick` among the `candidates` modules
//!   nearest the request (TF-IDF over the catalogue's documentation: each
//!   module's short description, name and description; and, at half weight,
//!   the names of the tasks the run was trained on); the host scores each
//!   `\n  <module>:` in full with the model, plus `prior_weight` × the
//!   retrieval cosine.
//! * At the start of a line the key is an `allow` among what fits there: an
//!   undocumented option or an unknown task keyword cannot be written, and the
//!   module's required options come before any other key (so a task cut short
//!   after them is still whole). Values,
//!   list items and nested mappings are the model's own (`free`, one line at a
//!   time).
//!
//! The guide is stateless: it re-reads the completion on every call (a few
//! hundred bytes), so a host may ask in any order and retry freely.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use plinth_plugin_sdk::protocol::{GuideRequest, Split, Step};
use plinth_plugin_sdk::Error;
use serde_json::{json, Value};

use crate::catalogue::{is_keyword, Catalogue, ModuleSpec, TASK_KEYWORDS};
use crate::SplitBy;

/// Indentation of a task's keys and of its module's arguments (the layout of
/// the training completions: `\n  <module>:\n    <option>: ...`).
const TASK: usize = 2;
const ARGS: usize = 4;

/// Guide settings, from the task request's `guide` object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// How many retrieved modules the model chooses among.
    pub candidates: usize,
    /// Weight of the retrieval cosine (0 to 1) beside the model's log-probability.
    pub prior_weight: f64,
}

impl Default for Settings {
    fn default() -> Self {
        // Measured on 100 validation prompts with the tiny preset: the model's
        // choice among 16 candidates got the module right 30 times (prior
        // weight 20), 23 (weight 8); retrieval alone 33 (BENCHMARKS.md). A
        // bigger model may rerank better: raise `candidates` to let it.
        Settings { candidates: 1, prior_weight: 20.0 }
    }
}

impl Settings {
    pub fn from_request(req: &Value) -> Result<Self, String> {
        let mut s = Settings::default();
        let Some(g) = req.get("guide") else { return Ok(s) };
        let obj = g.as_object().ok_or("guide must be an object {candidates, prior_weight}")?;
        for (k, v) in obj {
            match k.as_str() {
                "candidates" => {
                    s.candidates = v
                        .as_u64()
                        .filter(|&n| n > 0)
                        .ok_or(format!("guide.candidates must be a positive integer, got {v}"))?
                        as usize
                }
                "prior_weight" => {
                    s.prior_weight = v
                        .as_f64()
                        .filter(|w| w.is_finite() && *w >= 0.0)
                        .ok_or(format!("guide.prior_weight must be a number >= 0, got {v}"))?
                }
                other => return Err(format!("guide has no setting {other:?} (candidates, prior_weight)")),
            }
        }
        Ok(s)
    }
}

/// Words that say nothing about which module a request wants.
const STOPWORDS: &[&str] = &[
    "a", "all", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has", "have", "if",
    "in", "into", "is", "it", "its", "make", "my", "new", "not", "of", "on", "or", "our", "so", "sure", "that", "the",
    "their", "then", "this", "to", "using", "use", "via", "we", "when", "which", "will", "with", "you", "your",
];

/// Words of a text for retrieval: lowercase runs of letters and digits, stop
/// words left out, plural and verb endings cut (`installs`, `installed`,
/// `installing` → `install`).
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(|w| stem(&w).to_string())
}

/// A light suffix stripper: enough to match a request's verb or plural to a
/// description's, not a full stemmer.
fn stem(w: &str) -> &str {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(root) = w.strip_suffix(suffix) {
            if root.len() >= 3 && !(suffix == "s" && root.ends_with('s')) {
                return root;
            }
        }
    }
    w
}

/// A retrieval document: (module FQCN, text, weight of its cosine).
pub type Document = (String, String, f64);

/// Nearest modules to a request: TF-IDF cosine against documents that each
/// vote for one module; a module scores its best document.
pub struct ModuleIndex {
    modules: Vec<String>,
    /// (module index, document norm, weight) per document.
    docs: Vec<(usize, f64, f64)>,
    postings: HashMap<String, Vec<(usize, f64)>>,
    idf: HashMap<String, f64>,
    default_idf: f64,
}

impl ModuleIndex {
    /// Documents: every module's short description with the words of its
    /// name, and `extra` (module FQCN, text, weight) documents, whose cosine
    /// counts times their weight.
    pub fn new(cat: &Catalogue, extra: &[Document]) -> Self {
        let modules: Vec<String> = cat.modules.keys().cloned().collect();
        let position: HashMap<&str, usize> = modules.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
        let mut texts: Vec<(usize, BTreeSet<String>, f64)> = Vec::new();
        for (i, m) in cat.modules.values().enumerate() {
            let short = m.fqcn.rsplit('.').next().unwrap_or_default();
            texts.push((i, words(&m.short_description).chain(words(short)).collect(), 1.0));
        }
        for (module, text, weight) in extra {
            if let Some(&i) = position.get(module.as_str()) {
                texts.push((i, words(text).collect(), *weight));
            }
        }
        let mut df: HashMap<&str, f64> = HashMap::new();
        for (_, t, _) in &texts {
            for w in t {
                *df.entry(w).or_insert(0.0) += 1.0;
            }
        }
        let n = texts.len() as f64;
        let idf: HashMap<String, f64> =
            df.iter().map(|(w, d)| (w.to_string(), ((n + 1.0) / (d + 1.0)).ln() + 1.0)).collect();
        let mut postings: HashMap<String, Vec<(usize, f64)>> = HashMap::new();
        let mut docs = Vec::with_capacity(texts.len());
        for (d, (module, t, weight)) in texts.iter().enumerate() {
            let mut norm = 0.0;
            for w in t {
                let x = idf[w.as_str()];
                norm += x * x;
                postings.entry(w.clone()).or_default().push((d, x));
            }
            docs.push((*module, norm.sqrt(), *weight));
        }
        ModuleIndex { modules, docs, postings, idf, default_idf: (n + 1.0).ln() + 1.0 }
    }

    /// The `k` best modules for `query`, with their cosines, best first (ties: by name).
    pub fn nearest(&self, query: &str, k: usize) -> Vec<(String, f64)> {
        let q: BTreeSet<String> = words(query).collect();
        let q_norm = q.iter().map(|w| self.idf.get(w).copied().unwrap_or(self.default_idf).powi(2)).sum::<f64>().sqrt();
        let mut dot: HashMap<usize, f64> = HashMap::new();
        for w in &q {
            let wq = self.idf.get(w).copied().unwrap_or(self.default_idf);
            for &(d, x) in self.postings.get(w).map_or(&[][..], Vec::as_slice) {
                *dot.entry(d).or_insert(0.0) += wq * x;
            }
        }
        let mut best: HashMap<usize, f64> = HashMap::new();
        for (d, s) in dot {
            let (m, norm, weight) = self.docs[d];
            let cos = if norm > 0.0 && q_norm > 0.0 { weight * s / (norm * q_norm) } else { 0.0 };
            let e = best.entry(m).or_insert(0.0);
            *e = e.max(cos);
        }
        let mut ranked: Vec<(usize, f64)> = best.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| self.modules[a.0].cmp(&self.modules[b.0])));
        // Too few matches (a request of unknown words): fill up in name order.
        let mut seen: BTreeSet<usize> = ranked.iter().map(|r| r.0).collect();
        for i in 0..self.modules.len() {
            if ranked.len() >= k {
                break;
            }
            if seen.insert(i) {
                ranked.push((i, 0.0));
            }
        }
        ranked.into_iter().take(k).map(|(i, s)| (self.modules[i].clone(), s)).collect()
    }
}

/// How much a training task's name counts beside the catalogue's documents.
/// At 1 the names pull every request toward the modules that have examples:
/// on the validation split (split by module file, so no held-out module has
/// any) top-1 falls from 0.368 to 0.169; at 0.5 it stays 0.367 while a request
/// close to a training name still finds that module
/// (`cargo run --release -p plinth-plugin-codegen --example guide_retrieval`).
pub const NAME_WEIGHT: f64 = 0.5;

/// The index for runs split by `by` (built once per rule): each module's short
/// description with the words of its name, its description, and the names of
/// the training split's tasks at [`NAME_WEIGHT`].
fn index(by: SplitBy) -> Result<Arc<ModuleIndex>, String> {
    static CACHE: OnceLock<Mutex<HashMap<bool, Arc<ModuleIndex>>>> = OnceLock::new();
    let key = by == SplitBy::Module;
    let mut cache = CACHE.get_or_init(Default::default).lock().map_err(|_| "guide index lock poisoned")?;
    if let Some(ix) = cache.get(&key) {
        return Ok(ix.clone());
    }
    let ex = crate::extracted()?;
    let mut docs = descriptions(&ex.catalogue);
    docs.extend(training_names(&ex, by, NAME_WEIGHT));
    let ix = Arc::new(ModuleIndex::new(&ex.catalogue, &docs));
    cache.insert(key, ix.clone());
    Ok(ix)
}

/// (module, name, weight) of the training split's tasks under `by`.
pub fn training_names(ex: &crate::extract::Extracted, by: SplitBy, weight: f64) -> Vec<Document> {
    ex.pairs
        .iter()
        .filter(|p| by.split_of(&p.source) == Split::Train)
        .map(|p| (p.module.clone(), p.name.clone(), weight))
        .collect()
}

/// (module, description, weight 1) of every module that has one.
pub fn descriptions(cat: &Catalogue) -> Vec<Document> {
    cat.modules
        .values()
        .filter(|m| !m.description.is_empty())
        .map(|m| (m.fqcn.clone(), m.description.clone(), 1.0))
        .collect()
}

/// The `guide` component: `{"prompt", "completion", "request"}` → a step.
pub fn answer(req: GuideRequest) -> Result<Step, Error> {
    let task_request = Value::Object(req.request);
    let settings = Settings::from_request(&task_request)?;
    let by = SplitBy::from_request(&task_request)?;
    let ex = crate::extracted()?;
    let prompt = request_text(&req.prompt);
    let step = next_step(&ex.catalogue, &req.completion, |k| Ok(index(by)?.nearest(&prompt, k)), settings)?;
    serde_json::from_value(step).map_err(|e| Error::new(format!("the guide built an invalid step: {e}")))
}

/// The request inside a `- name: <request>` prompt.
fn request_text(prompt: &str) -> String {
    crate::catalogue::parse_task(prompt)
        .ok()
        .and_then(|t| t.get("name").and_then(|n| n.as_str()).map(String::from))
        .unwrap_or_else(|| prompt.trim_start_matches("- name:").trim().to_string())
}

/// One line of the completion.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    indent: usize,
    body: &'a str,
}

impl<'a> Line<'a> {
    fn new(text: &'a str) -> Self {
        let body = text.trim_start_matches(' ');
        Line { indent: text.len() - body.len(), body }
    }

    fn is_item(&self) -> bool {
        self.body == "-" || self.body.starts_with("- ")
    }

    /// The key of a `key:` or `key: value` line.
    fn key(&self) -> Option<&'a str> {
        if self.is_item() {
            return None;
        }
        let end = self.body.find(": ").or_else(|| self.body.ends_with(':').then(|| self.body.len() - 1))?;
        let key = &self.body[..end];
        (!key.is_empty() && !key.contains(' ')).then_some(key)
    }

    /// The scalar or flow value on the line: after `key: `, after `- ` (and
    /// after the key of a `- key: value` item).
    fn value(&self) -> &'a str {
        let rest = if self.is_item() { self.body[1..].trim_start() } else { self.body };
        let item = Line { indent: 0, body: rest };
        match item.key() {
            Some(k) if rest.len() > k.len() + 1 => rest[k.len() + 1..].trim_start(),
            Some(_) => "",
            None if self.is_item() => rest,
            None => "",
        }
    }

    /// Whether the next lines belong to it: a key with no value, or a block scalar.
    fn opens(&self) -> bool {
        let b = self.body.trim_end();
        (b.ends_with(':') && self.key().is_some())
            || ["|", "|-", "|+", ">", ">-", ">+"].iter().any(|m| b.ends_with(&format!(" {m}")) || b == *m)
    }
}

/// What the completion so far has settled.
struct State<'c> {
    module: Option<&'c ModuleSpec>,
    /// The module key as written (first line).
    module_key: Option<String>,
    /// The module's arguments came inline (`command: echo hi`).
    inline: bool,
    /// The task-level key whose block the text is in.
    section: Option<String>,
    task_keys: BTreeSet<String>,
    /// Canonical option names given.
    options: BTreeSet<String>,
    /// Complete lines (after the `- name:` line), blank ones left out.
    lines: Vec<Line<'c>>,
}

impl<'c> State<'c> {
    fn read(cat: &'c Catalogue, completion: &'c str) -> (Self, &'c str) {
        let mut parts: Vec<&str> = completion.split('\n').collect();
        let partial = parts.pop().unwrap_or_default();
        let mut s = State {
            module: None,
            module_key: None,
            inline: false,
            section: None,
            task_keys: BTreeSet::new(),
            options: BTreeSet::new(),
            lines: Vec::new(),
        };
        for text in parts.into_iter().skip(1) {
            let line = Line::new(text);
            if line.body.trim().is_empty() {
                continue;
            }
            if line.indent == TASK {
                if let Some(k) = line.key() {
                    s.section = Some(k.to_string());
                    s.task_keys.insert(k.to_string());
                    if s.module.is_none() && !is_keyword(k) {
                        s.module = cat.lookup(k, None);
                        s.module_key = Some(k.to_string());
                        s.inline = !line.body.trim_end().ends_with(':');
                    }
                }
            } else if line.indent == ARGS && s.in_module_block() {
                if let (Some(k), Some(m)) = (line.key(), s.module) {
                    s.options.insert(m.option_for(k).unwrap_or(k).to_string());
                }
            }
            s.lines.push(line);
        }
        // A key finished on the line being written counts as given.
        let line = Line::new(partial);
        if let (true, Some(k), Some(m)) = (line.indent == ARGS && s.in_module_block(), line.key(), s.module) {
            s.options.insert(m.option_for(k).unwrap_or(k).to_string());
        }
        (s, partial)
    }

    fn in_module_block(&self) -> bool {
        self.section.is_some() && self.section == self.module_key
    }

    /// Required options not yet given (while the module's block is open).
    fn missing_required(&self) -> Vec<&'c str> {
        let Some(m) = self.module else { return Vec::new() };
        if !self.in_module_block() || self.inline || m.any_keys {
            return Vec::new();
        }
        m.options
            .iter()
            .filter(|(name, o)| {
                o.required
                    && !o.shared
                    && !self.options.contains(name.as_str())
                    && !matches!(name.as_str(), "free_form" | "_raw_params")
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    fn can_end(&self) -> bool {
        self.module.is_some() && self.missing_required().is_empty()
    }

    /// Everything a new line may start with (whole-line prefixes).
    fn line_starts(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(m) = self.module else { return out };
        let in_module = self.in_module_block();
        let missing = self.missing_required();
        if in_module && !self.inline {
            if m.any_keys {
                out.push(" ".repeat(ARGS));
            } else {
                // Required options first: a task cut short after them is still whole.
                for (name, o) in &m.options {
                    if self.options.contains(name)
                        || matches!(name.as_str(), "free_form" | "_raw_params")
                        || !(missing.is_empty() || missing.contains(&name.as_str()))
                    {
                        continue;
                    }
                    out.push(format!("{}{name}:", " ".repeat(ARGS)));
                    out.extend(o.aliases.iter().map(|a| format!("{}{a}:", " ".repeat(ARGS))));
                }
            }
        }
        if missing.is_empty() {
            for kw in TASK_KEYWORDS.iter().chain(&["with_items"]) {
                if *kw != "name" && !self.task_keys.contains(*kw) {
                    out.push(format!("{}{kw}:", " ".repeat(TASK)));
                }
            }
        }
        // The latest line at the task's or the arguments' level anchors what
        // may nest under it.
        let anchor = self.lines.iter().rev().find(|l| l.indent <= ARGS);
        if let Some(a) = anchor {
            let is_module_line = a.indent == TASK && a.key().is_some() && a.key().map(String::from) == self.module_key;
            if !is_module_line && (a.opens() || a.is_item()) {
                // Under an opened key: a list at the key's own indentation (the
                // layout the corpus uses) or anything deeper.
                out.push(" ".repeat(a.indent + 2));
                if a.indent == TASK || a.indent == ARGS {
                    out.push(format!("{}- ", " ".repeat(a.indent)));
                }
            } else if a.indent > TASK && !in_module {
                // Inside a keyword's block (vars, environment): its own keys.
                out.push(" ".repeat(a.indent));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The step for `completion`; `nearest(k)` gives the retrieval candidates.
pub fn next_step(
    cat: &Catalogue,
    completion: &str,
    nearest: impl FnOnce(usize) -> Result<Vec<(String, f64)>, String>,
    settings: Settings,
) -> Result<Value, String> {
    let (state, partial) = State::read(cat, completion);
    let line = Line::new(partial);
    if state.module.is_none() {
        // The module line: picked whole, then its value.
        if let Some(m) = line.key().filter(|_| line.indent == TASK).and_then(|k| cat.lookup(k, None)) {
            return Ok(module_value(m, line, next_line_starts(cat, completion)));
        }
        if !partial.trim().is_empty() || (state.module_key.is_some()) {
            return Err(format!(
                "the completion so far does not start with a catalogue module ({:?})",
                completion.lines().nth(1).unwrap_or_default()
            ));
        }
        let head = if completion.is_empty() { "\n" } else { "" };
        let mut options = Vec::new();
        let mut prior = Vec::new();
        for (fqcn, cos) in nearest(settings.candidates)? {
            let whole = format!("{}{fqcn}:", " ".repeat(TASK));
            if let Some(rest) = whole.strip_prefix(partial) {
                options.push(format!("{head}{rest}"));
                prior.push(settings.prior_weight * cos);
            }
        }
        return Ok(json!({"kind": "pick", "options": options, "prior": prior}));
    }
    let can_end = state.can_end();
    let starts = state.line_starts();
    let done = starts.iter().any(|s| partial.starts_with(s.as_str()) && !s.trim().is_empty())
        || (!partial.trim().is_empty() && !starts.iter().any(|s| s.starts_with(partial)));
    if done || starts.iter().any(|s| s.trim().is_empty() && partial.starts_with(s.as_str())) {
        let next_lines = next_line_starts(cat, completion);
        return Ok(match quoting(line.value()) {
            Quoting::Open => json!({"kind": "free", "single_line": true, "eos": false, "line_end": false}),
            Quoting::Closed => json!({"kind": "allow", "options": ["\n"], "eos": can_end, "next_lines": next_lines}),
            Quoting::Plain => json!({"kind": "free", "single_line": true, "eos": can_end, "next_lines": next_lines}),
        });
    }
    let options: Vec<String> =
        starts.iter().filter_map(|s| s.strip_prefix(partial)).filter(|r| !r.is_empty()).map(String::from).collect();
    if options.is_empty() {
        // Nothing fits this indentation (the host keeps indentation on the way to
        // a line start, so this should not happen): end the answer here and let
        // the check judge it, rather than fail a whole evaluation.
        return Ok(json!({"kind": "allow", "options": [], "eos": true}));
    }
    Ok(json!({"kind": "allow", "options": options, "eos": can_end && partial.trim().is_empty()}))
}

/// The starts the line after the current one may take.
fn next_line_starts(cat: &Catalogue, completion: &str) -> Vec<String> {
    let ended = format!("{completion}\n");
    State::read(cat, &ended).0.line_starts()
}

/// Where a value stands in its quoting.
#[derive(Debug, PartialEq)]
enum Quoting {
    /// A quoted scalar or a flow collection not yet closed: the line goes on.
    Open,
    /// Closed: nothing may follow on the line.
    Closed,
    /// A plain scalar (or nothing yet).
    Plain,
}

fn quoting(value: &str) -> Quoting {
    let mut chars = value.char_indices().peekable();
    let Some((_, first)) = chars.next() else { return Quoting::Plain };
    match first {
        '\'' => {
            while let Some((_, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|&(_, n)| n) == Some('\'') {
                        chars.next();
                    } else {
                        return Quoting::Closed;
                    }
                }
            }
            Quoting::Open
        }
        '"' => {
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => return Quoting::Closed,
                    _ => {}
                }
            }
            Quoting::Open
        }
        '[' | '{' => {
            let (mut depth, mut quote) = (1usize, None::<char>);
            for (_, c) in chars {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '[' | '{') => depth += 1,
                    (None, ']' | '}') => {
                        depth -= 1;
                        if depth == 0 {
                            return Quoting::Closed;
                        }
                    }
                    _ => {}
                }
            }
            Quoting::Open
        }
        _ => Quoting::Plain,
    }
}

/// After `  <module>:`: a free-form or any-keys module may take its value on the
/// line; any other module's arguments are a block (or nothing, when none is required).
fn module_value(m: &ModuleSpec, line: Line<'_>, next_lines: Vec<String>) -> Value {
    let bare = line.body.trim_end().ends_with(':');
    let none_required = m.options.values().all(|o| !o.required || o.shared);
    if m.free_form || m.any_keys || !bare {
        json!({"kind": "free", "single_line": true, "eos": true, "next_lines": next_lines})
    } else {
        json!({"kind": "allow", "options": ["\n"], "eos": none_required, "next_lines": next_lines})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Mapping;

    fn catalogue() -> Catalogue {
        let doc = |fqcn: &str, desc: &str, yaml: &str| {
            let m: Mapping = serde_yaml_ng::from_str(yaml).expect("options yaml");
            let mut spec = ModuleSpec::from_doc(fqcn, &m, &Mapping::new());
            spec.short_description = desc.into();
            spec
        };
        let mut c = Catalogue::default();
        c.insert(doc("ansible.builtin.apt", "Manages apt packages", "name: {aliases: [pkg]}\nstate: {}\n"));
        c.insert(doc("ansible.builtin.service", "Manage services", "name: {required: true}\nstate: {}\n"));
        c.insert(doc("ansible.builtin.command", "Execute commands", "free_form: {}\ncmd: {}\nchdir: {}\n"));
        c
    }

    fn step(c: &Catalogue, completion: &str) -> Value {
        let near =
            |_k: usize| Ok(vec![("ansible.builtin.service".to_string(), 0.5), ("ansible.builtin.apt".into(), 0.25)]);
        next_step(c, completion, near, Settings { candidates: 2, prior_weight: 4.0 }).expect("a step")
    }

    fn options(v: &Value) -> Vec<&str> {
        v["options"].as_array().expect("options").iter().filter_map(Value::as_str).collect()
    }

    #[test]
    fn the_module_is_picked_among_the_nearest_with_their_prior() {
        let c = catalogue();
        let s = step(&c, "");
        assert_eq!(s["kind"], "pick");
        assert_eq!(options(&s), ["\n  ansible.builtin.service:", "\n  ansible.builtin.apt:"]);
        assert_eq!(s["prior"], json!([2.0, 1.0]));
        // A module with a required option opens a block and may not end there.
        let s = step(&c, "\n  ansible.builtin.service:");
        assert_eq!((&s["kind"], &s["options"], &s["eos"]), (&json!("allow"), &json!(["\n"]), &json!(false)));
        assert_eq!(s["next_lines"], json!(["    name:"]), "the block's first line is the required option");
        // A free-form module may take its command on the line.
        assert_eq!(step(&c, "\n  ansible.builtin.command:")["kind"], "free");
    }

    #[test]
    fn argument_keys_are_documented_options_and_required_ones_come_first() {
        let c = catalogue();
        let s = step(&c, "\n  ansible.builtin.service:\n");
        assert_eq!(s["kind"], "allow");
        assert_eq!(options(&s), ["    name:"], "the required option first: no other option, keyword or end");
        assert_eq!(s["eos"], false);
        // Partly typed: only what it can still become.
        assert_eq!(options(&step(&c, "\n  ansible.builtin.apt:\n    na")), ["me:"]);
        // A finished key: the value is the model's, on one line.
        let free = step(&c, "\n  ansible.builtin.service:\n    name: nginx");
        assert_eq!((&free["kind"], &free["single_line"], &free["eos"]), (&json!("free"), &json!(true), &json!(true)));
        let next_lines = json!({"options": free["next_lines"]});
        let next = options(&next_lines);
        assert!(next.contains(&"    state:") && next.contains(&"  become:") && !next.contains(&"      "), "{next:?}");
        let next = step(&c, "\n  ansible.builtin.service:\n    name: nginx\n");
        let opts = options(&next);
        assert!(
            opts.contains(&"    state:") && opts.contains(&"  become:") && !opts.contains(&"    name:"),
            "{opts:?}"
        );
        assert_eq!(next["eos"], true);
        // An indentation nothing fits ends the answer instead of failing.
        let stray = step(&c, "\n  ansible.builtin.apt:\n    name: nginx\n     ");
        assert_eq!(stray, json!({"kind": "allow", "options": [], "eos": true}));
        // Aliases count as their option.
        let opts = step(&c, "\n  ansible.builtin.apt:\n    pkg: nginx\n");
        assert!(!options(&opts).contains(&"    name:"), "{opts}");
    }

    #[test]
    fn lists_and_nested_blocks_are_free_under_an_opened_key() {
        let c = catalogue();
        let s = step(&c, "\n  ansible.builtin.apt:\n    name:\n");
        let opts = options(&s);
        assert!(opts.contains(&"    - ") && opts.contains(&"      "), "{opts:?}");
        assert_eq!(step(&c, "\n  ansible.builtin.apt:\n    name:\n    - ")["kind"], "free");
        let after_item = options(&step(&c, "\n  ansible.builtin.apt:\n    name:\n    - a\n")).join("|");
        assert!(after_item.contains("    - ") && after_item.contains("    state:"), "{after_item}");
        let loop_ = options(&step(&c, "\n  ansible.builtin.apt:\n    name: '{{ item }}'\n  loop:\n")).join("|");
        assert!(loop_.contains("  - ") && !loop_.contains("    state:"), "{loop_}");
    }

    #[test]
    fn a_quoted_value_must_close_and_then_end_its_line() {
        assert_eq!(quoting("'{{ item }}'"), Quoting::Closed);
        assert_eq!(quoting("'it''s"), Quoting::Open);
        assert_eq!(quoting("\"a \\\" b"), Quoting::Open);
        assert_eq!(quoting("[a, 'b]', c]"), Quoting::Closed);
        assert_eq!(quoting("{a: [1, 2]"), Quoting::Open);
        assert_eq!(quoting("nginx"), Quoting::Plain);
        let c = catalogue();
        let open = step(&c, "\n  ansible.builtin.apt:\n    name: '{{ item");
        assert_eq!((&open["line_end"], &open["eos"]), (&json!(false), &json!(false)));
        let closed = step(&c, "\n  ansible.builtin.apt:\n    name: '{{ item }}'");
        assert_eq!((&closed["kind"], &closed["options"]), (&json!("allow"), &json!(["\n"])));
        let item = step(&c, "\n  ansible.builtin.apt:\n    name:\n    - \"a");
        assert_eq!(item["line_end"], false, "{item}");
    }

    #[test]
    fn settings_come_from_the_request_and_bad_ones_are_named() {
        assert_eq!(Settings::from_request(&json!({})).expect("default"), Settings::default());
        let s = Settings::from_request(&json!({"guide": {"candidates": 4, "prior_weight": 0}})).expect("ok");
        assert_eq!(s, Settings { candidates: 4, prior_weight: 0.0 });
        let err = Settings::from_request(&json!({"guide": {"candidate": 4}})).expect_err("typo");
        assert!(err.contains("candidate") && err.contains("candidates, prior_weight"), "{err}");
        assert!(Settings::from_request(&json!({"guide": {"candidates": 0}})).is_err());
    }

    #[test]
    fn retrieval_ranks_by_the_best_matching_document() {
        let c = catalogue();
        let names = vec![("ansible.builtin.apt".to_string(), "Install nginx".to_string(), 1.0)];
        let ix = ModuleIndex::new(&c, &names);
        let near = ix.nearest("Install the nginx package", 2);
        assert_eq!(near[0].0, "ansible.builtin.apt", "{near:?}");
        assert!(near[0].1 > 0.0 && near[0].1 <= 1.0 + 1e-9);
        assert_eq!(ix.nearest("restart the service", 1)[0].0, "ansible.builtin.service");
        assert_eq!(ix.nearest("zzzz", 3).len(), 3, "filled up when nothing matches");
    }
}
