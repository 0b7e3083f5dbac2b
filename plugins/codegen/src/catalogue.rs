//! The module catalogue (every module's documented options, read from its
//! `DOCUMENTATION` block with its documentation fragments merged in) and the
//! checks made against it: is a text one task, with exactly one known module
//! (schema-correct), whose argument keys are all documented options of that
//! module with the required ones present (Ansible-aware).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

/// One documented option.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OptionSpec {
    pub required: bool,
    pub aliases: Vec<String>,
    /// Comes from a documentation fragment (connection and authentication
    /// settings shared by a collection's modules, usually given through
    /// `module_defaults` or environment variables rather than in the task).
    pub shared: bool,
}

/// One module: its fully-qualified name and options.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModuleSpec {
    pub fqcn: String,
    /// The documentation's one-line `short_description`.
    pub short_description: String,
    /// The documentation's `description` paragraphs, joined.
    pub description: String,
    pub options: BTreeMap<String, OptionSpec>,
    /// Takes its arguments as one string (`free_form` / `_raw_params`), as
    /// `command` and `shell` do.
    pub free_form: bool,
    /// Takes arbitrary `key: value` pairs (`key_value`), as `set_fact` does.
    pub any_keys: bool,
}

impl ModuleSpec {
    /// The option a key names (itself or through an alias).
    pub fn option_for(&self, key: &str) -> Option<&str> {
        if self.options.contains_key(key) {
            return self.options.get_key_value(key).map(|(k, _)| k.as_str());
        }
        self.options.iter().find(|(_, o)| o.aliases.iter().any(|a| a == key)).map(|(k, _)| k.as_str())
    }

    /// Builds the spec from a module's own documented options and those its
    /// documentation fragments add (`shared`).
    pub fn from_doc(fqcn: &str, options: &Mapping, shared: &Mapping) -> Self {
        let mut spec = ModuleSpec { fqcn: fqcn.to_string(), ..Default::default() };
        let own = options.iter().map(|kv| (kv, false));
        for ((k, v), is_shared) in own.chain(shared.iter().map(|kv| (kv, true))) {
            let Some(name) = k.as_str() else { continue };
            let required = v.get("required").is_some_and(truthy);
            let aliases = match v.get("aliases") {
                Some(Value::Sequence(s)) => s.iter().filter_map(|a| a.as_str().map(String::from)).collect(),
                Some(Value::String(a)) => vec![a.clone()],
                _ => Vec::new(),
            };
            match name {
                "free_form" | "_raw_params" => spec.free_form = true,
                "key_value" => spec.any_keys = true,
                _ => {}
            }
            spec.options.insert(name.to_string(), OptionSpec { required, aliases, shared: is_shared });
        }
        spec
    }
}

/// YAML 1.1 truth as Ansible reads it (`yes`, `true`, `True`).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "y"),
        _ => false,
    }
}

/// Task keywords that are not modules (playbook keywords valid on a task or block).
pub const TASK_KEYWORDS: &[&str] = &[
    "name",
    "action",
    "local_action",
    "args",
    "any_errors_fatal",
    "async",
    "become",
    "become_exe",
    "become_flags",
    "become_method",
    "become_user",
    "changed_when",
    "check_mode",
    "collections",
    "connection",
    "debugger",
    "delay",
    "delegate_facts",
    "delegate_to",
    "diff",
    "environment",
    "failed_when",
    "ignore_errors",
    "ignore_unreachable",
    "listen",
    "loop",
    "loop_control",
    "module_defaults",
    "no_log",
    "notify",
    "poll",
    "port",
    "register",
    "remote_user",
    "retries",
    "run_once",
    "tags",
    "throttle",
    "timeout",
    "until",
    "vars",
    "when",
];

/// Whether a task key is a keyword rather than a module.
pub fn is_keyword(key: &str) -> bool {
    TASK_KEYWORDS.contains(&key) || key.starts_with("with_")
}

/// All modules, by FQCN, with an index from short names.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub modules: BTreeMap<String, ModuleSpec>,
    short: HashMap<String, BTreeSet<String>>,
}

impl Catalogue {
    pub fn insert(&mut self, spec: ModuleSpec) {
        let short = spec.fqcn.rsplit('.').next().unwrap_or_default().to_string();
        self.short.entry(short).or_default().insert(spec.fqcn.clone());
        self.modules.insert(spec.fqcn.clone(), spec);
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The FQCN a task key names: an FQCN as is (`ansible.legacy.x` is
    /// `ansible.builtin.x`); a short name in `collection` first (the collection
    /// whose examples use it), then `ansible.builtin`, then the only collection
    /// that has it. `Err` explains (unknown, or ambiguous with the candidates).
    pub fn resolve(&self, key: &str, collection: Option<&str>) -> Result<&ModuleSpec, String> {
        if let Some(m) = self.lookup(key, collection) {
            return Ok(m);
        }
        let key =
            key.strip_prefix("ansible.legacy.").map_or_else(|| key.to_string(), |k| format!("ansible.builtin.{k}"));
        match self.short.get(&key) {
            Some(set) if !key.contains('.') && set.len() > 1 => Err(format!(
                "module name {key:?} is ambiguous: use a fully-qualified name ({})",
                set.iter().take(4).cloned().collect::<Vec<_>>().join(", ")
            )),
            _ => Err(self.unknown(&key)),
        }
    }

    /// [`Catalogue::resolve`] without the explanation: `None` when the key is
    /// unknown or ambiguous.
    pub fn lookup(&self, key: &str, collection: Option<&str>) -> Option<&ModuleSpec> {
        if let Some(k) = key.strip_prefix("ansible.legacy.") {
            return self.modules.get(&format!("ansible.builtin.{k}"));
        }
        if key.contains('.') {
            return self.modules.get(key);
        }
        for ns in collection.into_iter().chain(["ansible.builtin"]) {
            if let Some(m) = self.modules.get(&format!("{ns}.{key}")) {
                return Some(m);
            }
        }
        match self.short.get(key) {
            Some(set) if set.len() == 1 => set.iter().next().and_then(|f| self.modules.get(f)),
            _ => None,
        }
    }

    fn unknown(&self, key: &str) -> String {
        match self.suggest(key) {
            Some(s) => format!("unknown module {key:?}; did you mean {s:?}?"),
            None => format!("unknown module {key:?}"),
        }
    }

    /// The closest module name (FQCN or short name, whichever `key` is), if close enough.
    pub fn suggest(&self, key: &str) -> Option<String> {
        let names: Box<dyn Iterator<Item = &String>> =
            if key.contains('.') { Box::new(self.modules.keys()) } else { Box::new(self.short.keys()) };
        let budget = (key.chars().count() / 4).clamp(1, 3);
        let len = key.chars().count();
        names
            .filter(|n| n.len().abs_diff(len) <= budget)
            .map(|n| (edit_distance(key, n), n))
            .filter(|(d, _)| *d <= budget)
            .min()
            .map(|(_, n)| {
                if key.contains('.') {
                    n.clone()
                } else {
                    self.resolve(n, None).map_or(n.clone(), |m| m.fqcn.clone())
                }
            })
    }
}

/// Edit distance with adjacent transpositions (optimal string alignment), over
/// characters: the usual typo distance.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1).min(d[i * w + j - 1] + 1).min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// What the checks found in one task text.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskCheck {
    /// The module's FQCN when the task is schema-correct.
    pub module: Option<String>,
    /// Why the text is not one task with exactly one known module (None: it is).
    pub schema_error: Option<String>,
    /// Why the arguments do not fit the module's documentation (None: they do,
    /// or the schema check already failed).
    pub argument_error: Option<String>,
}

impl TaskCheck {
    pub fn schema_correct(&self) -> bool {
        self.schema_error.is_none()
    }

    pub fn ansible_aware(&self) -> bool {
        self.schema_error.is_none() && self.argument_error.is_none()
    }

    /// The first problem, if any.
    pub fn error(&self) -> Option<&str> {
        self.schema_error.as_deref().or(self.argument_error.as_deref())
    }
}

/// Parses `text` as one task: a mapping, or a list holding exactly one mapping
/// (the `- name: ...` form).
pub fn parse_task(text: &str) -> Result<Mapping, String> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    match value {
        Value::Mapping(m) => Ok(m),
        Value::Sequence(items) => match items.as_slice() {
            [Value::Mapping(m)] => Ok(m.clone()),
            [_] => Err("the list item is not a task mapping".into()),
            _ => Err(format!("expected one task, found a list of {}", items.len())),
        },
        Value::Null => Err("empty: no task".into()),
        other => Err(format!("expected a task mapping, found {}", kind(&other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Checks one task text against the catalogue (short module names resolve in
/// `collection` first, see [`Catalogue::resolve`]).
pub fn check_task(text: &str, cat: &Catalogue, collection: Option<&str>) -> TaskCheck {
    let task = match parse_task(text) {
        Ok(t) => t,
        Err(e) => return TaskCheck { schema_error: Some(e), ..Default::default() },
    };
    check_mapping(&task, cat, collection)
}

/// [`check_task`] on a parsed task mapping.
pub fn check_mapping(task: &Mapping, cat: &Catalogue, collection: Option<&str>) -> TaskCheck {
    let mut modules = Vec::new();
    for k in task.keys() {
        let Some(key) = k.as_str() else {
            return TaskCheck { schema_error: Some(format!("task key {k:?} is not a string")), ..Default::default() };
        };
        if !is_keyword(key) {
            modules.push(key);
        }
    }
    let key = match modules.as_slice() {
        [one] => *one,
        [] => return TaskCheck { schema_error: Some("the task names no module".into()), ..Default::default() },
        many => {
            // Name the unknown ones first: that is usually the mistake.
            let unknown: Vec<String> = many.iter().filter_map(|k| cat.resolve(k, collection).err()).collect();
            let msg = if unknown.is_empty() {
                format!("the task names {} modules ({}); a task runs exactly one", many.len(), many.join(", "))
            } else {
                unknown.join("; ")
            };
            return TaskCheck { schema_error: Some(msg), ..Default::default() };
        }
    };
    let module = match cat.resolve(key, collection) {
        Ok(m) => m,
        Err(e) => return TaskCheck { schema_error: Some(e), ..Default::default() },
    };
    let args = &task[key];
    let mut check = TaskCheck { module: Some(module.fqcn.clone()), ..Default::default() };
    check.argument_error = check_arguments(module, args, task.get("args"), key).err();
    check
}

fn check_arguments(module: &ModuleSpec, args: &Value, extra: Option<&Value>, key: &str) -> Result<(), String> {
    let mut given: Vec<&str> = Vec::new();
    let mut free_text = false;
    match args {
        Value::Null => {}
        Value::Mapping(m) => {
            for k in m.keys() {
                given.push(k.as_str().ok_or_else(|| format!("{key}: argument key {k:?} is not a string"))?);
            }
        }
        Value::String(_) if module.free_form || module.any_keys => free_text = true,
        // The `key=value key2=value2` shorthand: its keys are checked like a mapping's.
        Value::String(s) if !s.trim().is_empty() && s.split_whitespace().all(|t| t.contains('=')) => {
            given.extend(s.split_whitespace().filter_map(|t| t.split_once('=').map(|(k, _)| k)));
        }
        other => {
            return Err(format!(
                "{key}: arguments must be a mapping of options, found {}{}",
                kind(other),
                if module.free_form { " (or one free-form string)" } else { "" }
            ))
        }
    }
    match extra {
        None => {}
        Some(Value::Mapping(m)) => given.extend(m.keys().filter_map(Value::as_str)),
        Some(other) => return Err(format!("args: must be a mapping, found {}", kind(other))),
    }
    if module.any_keys || free_text {
        return Ok(());
    }
    let mut present = BTreeSet::new();
    for k in given {
        match module.option_for(k) {
            Some(opt) => {
                present.insert(opt);
            }
            None => {
                let near = module.options.keys().map(|o| (edit_distance(k, o), o)).min().filter(|(d, _)| *d <= 2);
                return Err(match near {
                    Some((_, o)) => {
                        format!("{}: {k:?} is not an option of this module; did you mean {o:?}?", module.fqcn)
                    }
                    None => format!("{}: {k:?} is not an option of this module", module.fqcn),
                });
            }
        }
    }
    let missing: Vec<&str> = module
        .options
        .iter()
        .filter(|(name, o)| {
            o.required
                && !o.shared
                && !present.contains(name.as_str())
                && !matches!(name.as_str(), "free_form" | "_raw_params")
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!("{}: missing required option(s) {}", module.fqcn, missing.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        let doc = |fqcn: &str, yaml: &str| {
            let m: Mapping = serde_yaml_ng::from_str(yaml).expect("options yaml");
            ModuleSpec::from_doc(fqcn, &m, &Mapping::new())
        };
        let mut c = Catalogue::default();
        c.insert(doc("ansible.builtin.apt", "name: {aliases: [pkg, package]}\nstate: {}\nupdate_cache: {}\n"));
        c.insert(doc("ansible.builtin.service", "name: {required: true}\nstate: {}\nenabled: {}\n"));
        c.insert(doc("ansible.builtin.command", "free_form: {}\ncmd: {}\nchdir: {}\n"));
        c.insert(doc("ansible.builtin.set_fact", "key_value: {required: true}\n"));
        c.insert(doc("community.general.apt_rpm", "package: {required: true}\n"));
        c.insert(doc("community.general.service", "name: {}\n"));
        c
    }

    #[test]
    fn accepts_well_formed_tasks() {
        let c = catalogue();
        for text in [
            "- name: Install nginx\n  ansible.builtin.apt:\n    name: nginx\n    state: present\n",
            "name: x\napt:\n  pkg: [a, b]\nbecome: true\n",
            "- name: shorthand\n  ansible.builtin.apt: name=nginx state=present\n",
            "- name: run\n  ansible.builtin.command: echo hi\n  args:\n    chdir: /tmp\n",
            "- name: facts\n  ansible.builtin.set_fact:\n    anything: 1\n",
            "- name: legacy\n  ansible.legacy.service:\n    name: x\n  when: y\n  with_items: [1]\n",
        ] {
            let check = check_task(text, &c, None);
            assert!(check.ansible_aware(), "{text}: {check:?}");
        }
    }

    #[test]
    fn rejects_known_bad_tasks_with_a_precise_message() {
        let c = catalogue();
        let err = |text: &str| check_task(text, &c, None).error().expect("an error").to_string();
        assert_eq!(
            err("- name: x\n  ansible.builtin.aptt:\n    name: a\n"),
            "unknown module \"ansible.builtin.aptt\"; did you mean \"ansible.builtin.apt\"?"
        );
        assert_eq!(
            err("- name: x\n  ansible.builtin.apt:\n    nme: a\n"),
            "ansible.builtin.apt: \"nme\" is not an option of this module; did you mean \"name\"?"
        );
        assert_eq!(
            err("- name: x\n  ansible.builtin.service:\n    state: started\n"),
            "ansible.builtin.service: missing required option(s) name"
        );
        assert_eq!(
            err("- name: x\n  ansible.builtin.apt:\n    - name: a\n"),
            "ansible.builtin.apt: arguments must be a mapping of options, found a list"
        );
        assert_eq!(
            err("- name: x\n  ansible.builtin.apt: {name: a}\n- name: y\n  ansible.builtin.apt: {name: b}\n"),
            "expected one task, found a list of 2"
        );
        assert_eq!(err("- name: x\n  become: true\n"), "the task names no module");
        assert_eq!(
            err("- name: x\n  ansible.builtin.apt: name=a colour=red\n"),
            "ansible.builtin.apt: \"colour\" is not an option of this module"
        );
        assert_eq!(
            err("- name: x\n  ansible.builtin.apt: nginx\n"),
            "ansible.builtin.apt: arguments must be a mapping of options, found a string"
        );
        assert!(err("name: [unclosed\n").starts_with("not valid YAML"));
        assert_eq!(
            err("- name: x\n  service:\n    name: a\n  apt:\n    name: b\n"),
            "the task names 2 modules (service, apt); a task runs exactly one"
        );
    }

    #[test]
    fn short_names_resolve_in_the_collection_then_builtin() {
        let c = catalogue();
        assert_eq!(c.resolve("service", None).expect("ok").fqcn, "ansible.builtin.service");
        assert_eq!(c.resolve("service", Some("community.general")).expect("ok").fqcn, "community.general.service");
        assert_eq!(c.resolve("apt_rpm", None).expect("ok").fqcn, "community.general.apt_rpm");
        assert_eq!(
            c.resolve("atp", None).expect_err("an error"),
            "unknown module \"atp\"; did you mean \"ansible.builtin.apt\"?"
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("apt", "apt"), 0);
        assert_eq!(edit_distance("atp", "apt"), 1, "a transposition is one edit");
    }
}
