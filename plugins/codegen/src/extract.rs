//! Extraction from the pinned `ansible` and `ansible-core` wheels: every module
//! file's `DOCUMENTATION` (options, with documentation fragments merged) and
//! `EXAMPLES` (YAML tasks). The examples give the pretraining corpus and the
//! (task name -> task) pairs; the documentation gives the catalogue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

use crate::catalogue::{check_mapping, is_keyword, Catalogue, ModuleSpec};
use crate::pyliteral::string_constants;

/// A module file's source, named by its FQCN.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// `namespace.collection.module` (`ansible.builtin.x` for ansible-core).
    pub fqcn: String,
    /// The path inside its wheel.
    pub path: String,
    pub text: String,
}

impl SourceFile {
    pub fn collection(&self) -> &str {
        self.fqcn.rsplit_once('.').map_or("", |(c, _)| c)
    }
}

/// One (natural-language name -> task) pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    /// The task's `name:` value.
    pub name: String,
    /// The prompt the model continues: `- name: <name>` (the line without its
    /// newline, so the tokens at the boundary are the ones pretraining saw).
    pub prompt: String,
    /// The rest of the task from that newline on (module with FQCN, arguments,
    /// keywords), indented as a list item, ending in a newline.
    pub completion: String,
    /// The module's FQCN.
    pub module: String,
    /// The module file whose EXAMPLES held it (the split's group).
    pub source: String,
}

impl Pair {
    pub fn text(&self) -> String {
        format!("{}{}", self.prompt, self.completion)
    }
}

/// Something skipped during extraction, with where and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub path: String,
    pub what: String,
}

/// Counts for the data report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub module_files: usize,
    pub with_examples: usize,
    pub collections: usize,
    pub catalogue_modules: usize,
    pub tasks_with_name_and_module: usize,
    pub unknown_module: usize,
    pub undocumented_arguments: usize,
    pub duplicates_removed: usize,
    pub pairs: usize,
}

/// Everything extracted.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub catalogue: Catalogue,
    /// `(module file FQCN, EXAMPLES text)` for every block that parsed as YAML.
    pub blocks: Vec<(String, String)>,
    pub pairs: Vec<Pair>,
    pub problems: Vec<Problem>,
    pub counts: Counts,
}

/// Module files and documentation fragments of the two wheels (zip archives in memory or on disk).
pub fn read_wheels(paths: &[std::path::PathBuf]) -> Result<(Vec<SourceFile>, HashMap<String, String>), String> {
    let mut modules = Vec::new();
    let mut fragments = HashMap::new();
    for path in paths {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| format!("{} is not a readable wheel: {e}", path.display()))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| format!("{}: {e}", path.display()))?;
            let name = entry.name().to_string();
            let Some(kind) = classify(&name) else { continue };
            let mut text = String::new();
            if entry.read_to_string(&mut text).is_err() {
                continue;
            }
            match kind {
                Kind::Module(fqcn) => modules.push(SourceFile { fqcn, path: name, text }),
                Kind::Fragment(prefixes) => {
                    for p in prefixes {
                        fragments.insert(p, text.clone());
                    }
                }
            }
        }
    }
    modules.sort_by(|a, b| a.fqcn.cmp(&b.fqcn).then(a.path.cmp(&b.path)));
    Ok((modules, fragments))
}

enum Kind {
    Module(String),
    /// The names a fragment file is referenced by (without a variable suffix).
    Fragment(Vec<String>),
}

fn classify(path: &str) -> Option<Kind> {
    let stem = path.strip_suffix(".py")?.rsplit('/').next()?;
    if stem.starts_with("__") {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["ansible", "modules", ..] => Some(Kind::Module(format!("ansible.builtin.{stem}"))),
        ["ansible", "plugins", "doc_fragments", _] => {
            Some(Kind::Fragment(vec![stem.to_string(), format!("ansible.builtin.{stem}")]))
        }
        ["ansible_collections", ns, coll, "plugins", "modules", ..] => {
            Some(Kind::Module(format!("{ns}.{coll}.{stem}")))
        }
        ["ansible_collections", ns, coll, "plugins", "doc_fragments", _] => {
            Some(Kind::Fragment(vec![format!("{ns}.{coll}.{stem}")]))
        }
        _ => None,
    }
}

/// Looks a fragment reference (`files`, `community.general.attributes`,
/// `amazon.aws.common.modules`) up: the whole name is a file (its
/// `DOCUMENTATION`), or the last part names a constant in the file before it.
fn fragment_options(
    reference: &str,
    fragments: &HashMap<String, String>,
    cache: &mut HashMap<String, Option<Mapping>>,
) -> Option<Mapping> {
    if let Some(hit) = cache.get(reference) {
        return hit.clone();
    }
    let lookup = |file: &str, constant: &str| -> Option<Mapping> {
        let src = fragments.get(file)?;
        let c = string_constants(src).into_iter().find(|c| c.name == constant)?;
        let doc: Value = serde_yaml_ng::from_str(&c.value.ok()?).ok()?;
        match doc.get("options") {
            Some(Value::Mapping(m)) => Some(m.clone()),
            _ => Some(Mapping::new()),
        }
    };
    let found = lookup(reference, "DOCUMENTATION").or_else(|| {
        let (file, var) = reference.rsplit_once('.')?;
        lookup(file, &var.to_ascii_uppercase())
    });
    cache.insert(reference.to_string(), found.clone());
    found
}

/// Extracts catalogue, example blocks and pairs from module sources.
pub fn extract(modules: &[SourceFile], fragments: &HashMap<String, String>) -> Extracted {
    let mut out = Extracted::default();
    let mut frag_cache = HashMap::new();
    let mut missing_fragments: BTreeMap<String, usize> = BTreeMap::new();
    let mut examples: Vec<(usize, String)> = Vec::new();
    let mut collections = HashSet::new();
    out.counts.module_files = modules.len();
    for (i, m) in modules.iter().enumerate() {
        let consts = string_constants(&m.text);
        let get = |n: &str| consts.iter().find(|c| c.name == n);
        if let Some(doc) = get("DOCUMENTATION") {
            match doc.value.as_ref().map_err(Clone::clone).and_then(|v| {
                serde_yaml_ng::from_str::<Value>(v).map_err(|e| format!("DOCUMENTATION is not YAML: {e}"))
            }) {
                Ok(doc) => {
                    let options = match doc.get("options") {
                        Some(Value::Mapping(o)) => o.clone(),
                        _ => Mapping::new(),
                    };
                    let refs = match doc.get("extends_documentation_fragment") {
                        Some(Value::String(s)) => vec![s.clone()],
                        Some(Value::Sequence(s)) => s.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
                        _ => Vec::new(),
                    };
                    let mut shared = Mapping::new();
                    for r in refs {
                        // A bare name is the module's own collection's fragment, else ansible-core's.
                        let found = fragment_options(&r, fragments, &mut frag_cache).or_else(|| {
                            (!r.contains('.') || r.matches('.').count() == 1)
                                .then(|| {
                                    fragment_options(&format!("{}.{r}", m.collection()), fragments, &mut frag_cache)
                                })
                                .flatten()
                        });
                        match found {
                            Some(extra) => {
                                for (k, v) in extra {
                                    if !options.contains_key(&k) && !shared.contains_key(&k) {
                                        shared.insert(k, v);
                                    }
                                }
                            }
                            None => *missing_fragments.entry(r).or_insert(0) += 1,
                        }
                    }
                    let mut spec = ModuleSpec::from_doc(&m.fqcn, &options, &shared);
                    if let Some(d) = doc.get("short_description").and_then(Value::as_str) {
                        spec.short_description = d.split_whitespace().collect::<Vec<_>>().join(" ");
                    }
                    let paragraphs = match doc.get("description") {
                        Some(Value::String(d)) => vec![d.as_str()],
                        Some(Value::Sequence(ds)) => ds.iter().filter_map(Value::as_str).collect(),
                        _ => Vec::new(),
                    };
                    spec.description = paragraphs.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
                    out.catalogue.insert(spec);
                }
                Err(e) => out.problems.push(Problem { path: m.path.clone(), what: e }),
            }
        }
        if let Some(ex) = get("EXAMPLES") {
            match &ex.value {
                Ok(v) => examples.push((i, v.clone())),
                Err(e) => out
                    .problems
                    .push(Problem { path: m.path.clone(), what: format!("EXAMPLES (line {}): {e}", ex.line) }),
            }
        }
    }
    for (r, n) in missing_fragments {
        out.problems.push(Problem {
            path: r.clone(),
            what: format!("documentation fragment {r:?} (used by {n} modules) has no literal DOCUMENTATION; its options are unknown"),
        });
    }
    out.counts.catalogue_modules = out.catalogue.len();
    let mut seen = HashSet::new();
    for (i, text) in examples {
        let m = &modules[i];
        out.counts.with_examples += 1;
        let docs = match parse_documents(&text) {
            Ok(d) => d,
            Err(e) => {
                out.problems.push(Problem { path: m.path.clone(), what: format!("EXAMPLES is not valid YAML: {e}") });
                continue;
            }
        };
        collections.insert(m.collection().to_string());
        out.blocks.push((m.fqcn.clone(), text.trim_matches('\n').to_string() + "\n"));
        let mut tasks = Vec::new();
        for d in &docs {
            collect_tasks(d, &mut tasks);
        }
        for task in tasks {
            out.counts.tasks_with_name_and_module += 1;
            match make_pair(task, &out.catalogue, m) {
                Ok(pair) => {
                    if seen.insert(pair.text()) {
                        out.pairs.push(pair);
                    } else {
                        out.counts.duplicates_removed += 1;
                    }
                }
                Err(Skip::Unknown) => out.counts.unknown_module += 1,
                Err(Skip::Arguments) => out.counts.undocumented_arguments += 1,
            }
        }
    }
    out.counts.collections = collections.len();
    out.counts.pairs = out.pairs.len();
    out
}

/// All YAML documents in a block (`---` separated).
fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for d in serde_yaml_ng::Deserializer::from_str(text) {
        let mut doc = Value::deserialize(d).map_err(|e| e.to_string())?;
        // `<<: *anchor` merge keys, as Ansible's loader applies them.
        doc.apply_merge().map_err(|e| e.to_string())?;
        docs.push(doc);
    }
    Ok(docs)
}

/// Tasks (mappings with a string `name` and at least one non-keyword key) in an
/// EXAMPLES document: top-level tasks, and those inside plays and blocks.
fn collect_tasks<'a>(v: &'a Value, out: &mut Vec<&'a Mapping>) {
    match v {
        Value::Sequence(items) => items.iter().for_each(|i| collect_tasks(i, out)),
        Value::Mapping(m) => {
            let nested = ["tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"];
            let mut container = false;
            for key in nested {
                if let Some(inner) = m.get(key) {
                    container = true;
                    collect_tasks(inner, out);
                }
            }
            if container || m.contains_key("hosts") {
                return;
            }
            let named = m.get("name").is_some_and(|n| n.as_str().is_some_and(|s| !s.trim().is_empty()));
            let has_module = m.keys().any(|k| k.as_str().is_some_and(|k| !is_keyword(k)));
            if named && has_module {
                out.push(m);
            }
        }
        _ => {}
    }
}

enum Skip {
    Unknown,
    Arguments,
}

/// The pair for one task: the module key rewritten to its FQCN, `name` first.
fn make_pair(task: &Mapping, cat: &Catalogue, src: &SourceFile) -> Result<Pair, Skip> {
    // Unknown modules are common (other collections' modules); skip them before
    // the full check, which would look for a "did you mean".
    let modules: Vec<&str> = task.keys().filter_map(Value::as_str).filter(|k| !is_keyword(k)).collect();
    if modules.len() != 1 || modules.iter().any(|k| cat.lookup(k, Some(src.collection())).is_none()) {
        return Err(Skip::Unknown);
    }
    let check = check_mapping(task, cat, Some(src.collection()));
    let Some(module) = check.module.clone() else { return Err(Skip::Unknown) };
    if check.argument_error.is_some() {
        return Err(Skip::Arguments);
    }
    let name = task.get("name").and_then(Value::as_str).unwrap_or_default().trim().to_string();
    let mut body = Mapping::new();
    for (k, v) in task {
        let key = k.as_str().unwrap_or_default();
        if key == "name" {
            continue;
        }
        if !is_keyword(key) {
            body.insert(Value::String(module.clone()), v.clone());
        }
    }
    for (k, v) in task {
        if k.as_str().is_some_and(|k| k != "name" && is_keyword(k)) {
            body.insert(k.clone(), v.clone());
        }
    }
    Ok(Pair {
        prompt: prompt_for(&name),
        completion: format!("\n{}", indent_item(&to_yaml(&Value::Mapping(body)))),
        name,
        module,
        source: src.fqcn.clone(),
    })
}

/// The prompt for a natural-language request: `- name: <request>`, quoted when YAML needs it.
pub fn prompt_for(request: &str) -> String {
    let one_line = request.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("- name: {}", to_yaml(&Value::String(one_line)).trim_end())
}

fn to_yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}

/// Indents a mapping's YAML by two spaces so it continues a `- name:` list item.
fn indent_item(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 64);
    for line in yaml.lines() {
        if !line.is_empty() {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Synthetic pairs from the documentation, one per catalogue module with a
/// `short_description`: that description as the name, the module (FQCN) with its
/// own required options as `'{{ option }}'` placeholders as the task. They tie what
/// a module does, in words, to its name and arguments for every documented module,
/// held-out ones included; no example text is used.
pub fn documentation_pairs(cat: &Catalogue) -> Vec<Pair> {
    let mut out = Vec::new();
    for m in cat.modules.values() {
        let name = m.short_description.trim().trim_end_matches('.');
        if name.is_empty() {
            continue;
        }
        let mut args = Mapping::new();
        for (opt, spec) in &m.options {
            if spec.required && !spec.shared && !matches!(opt.as_str(), "free_form" | "_raw_params" | "key_value") {
                args.insert(Value::String(opt.clone()), Value::String(format!("{{{{ {opt} }}}}")));
            }
        }
        let args = if args.is_empty() { Value::Null } else { Value::Mapping(args) };
        let mut body = Mapping::new();
        body.insert(Value::String(m.fqcn.clone()), args);
        out.push(Pair {
            name: name.to_string(),
            prompt: prompt_for(name),
            completion: format!("\n{}", indent_item(&to_yaml(&Value::Mapping(body)))),
            module: m.fqcn.clone(),
            source: m.fqcn.clone(),
        });
    }
    out
}

/// Counts per split for the report.
pub fn split_sizes(
    pairs: &[Pair],
    split_of: impl Fn(&Pair) -> plinth_plugin_sdk::protocol::Split,
) -> BTreeMap<String, usize> {
    let mut sizes = BTreeMap::new();
    for p in pairs {
        *sizes.entry(format!("{:?}", split_of(p)).to_lowercase()).or_insert(0) += 1;
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(fqcn: &str, text: &str) -> SourceFile {
        SourceFile { fqcn: fqcn.into(), path: format!("{fqcn}.py"), text: text.into() }
    }

    const APT: &str = "DOCUMENTATION = r'''\nmodule: apt\noptions:\n  name:\n    aliases: [pkg]\n  state: {}\nextends_documentation_fragment: [files]\n'''\nEXAMPLES = r'''\n- name: Install nginx\n  apt:\n    name: nginx\n    mode: '0644'\n  become: yes\n- name: Install nginx\n  apt:\n    name: nginx\n    mode: '0644'\n  become: yes\n- hosts: all\n  tasks:\n    - name: In a play\n      ansible.builtin.apt: {pkg: x}\n- name: Unknown\n  nosuch: {}\n- name: Bad option\n  apt: {colour: red}\n- debug: {msg: no name}\n'''\n";

    #[test]
    fn pairs_come_from_named_tasks_with_a_known_module() {
        let frags: HashMap<String, String> =
            [("files".to_string(), "class F:\n    DOCUMENTATION = r'''\noptions:\n  mode: {}\n'''\n".to_string())]
                .into();
        let broken = source("ansible.builtin.broken", "EXAMPLES = r'''\n- name: x\n  apt: [unclosed\n'''\n");
        let ex = extract(&[source("ansible.builtin.apt", APT), broken], &frags);
        assert_eq!(ex.catalogue.len(), 1);
        assert!(ex.catalogue.modules["ansible.builtin.apt"].options.contains_key("mode"), "fragment merged");
        let names: Vec<&str> = ex.pairs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Install nginx", "In a play"]);
        assert_eq!(ex.counts.tasks_with_name_and_module, 5);
        assert_eq!(
            (ex.counts.duplicates_removed, ex.counts.unknown_module, ex.counts.undocumented_arguments),
            (1, 1, 1)
        );
        assert_eq!(ex.pairs[0].prompt, "- name: Install nginx");
        assert_eq!(
            ex.pairs[0].completion,
            "\n  ansible.builtin.apt:\n    name: nginx\n    mode: '0644'\n  become: yes\n"
        );
        assert_eq!(ex.problems.len(), 1, "{:?}", ex.problems);
        assert!(ex.problems[0].what.starts_with("EXAMPLES is not valid YAML"), "{:?}", ex.problems);
        assert_eq!(ex.blocks.len(), 1);
    }

    #[test]
    fn documentation_pairs_name_the_module_and_its_required_options() {
        let frags = HashMap::new();
        let doc = "DOCUMENTATION = r'''\nmodule: svc\nshort_description: Manage  services.\noptions:\n  name: {required: true}\n  state: {}\n'''\n";
        let ex = extract(&[source("ansible.builtin.svc", doc)], &frags);
        let pairs = documentation_pairs(&ex.catalogue);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].text(), "- name: Manage services\n  ansible.builtin.svc:\n    name: '{{ name }}'\n");
        let check = crate::catalogue::check_task(&pairs[0].text(), &ex.catalogue, None);
        assert!(check.ansible_aware(), "{check:?}");
    }

    #[test]
    fn prompts_quote_what_yaml_would_misread() {
        assert_eq!(prompt_for("Install  nginx\n now"), "- name: Install nginx now");
        assert_eq!(prompt_for("key: value"), "- name: 'key: value'");
    }
}
