//! Chemistry on top of [`crate::smiles`] (validity) and the `chematic` crates
//! (canonical SMILES, ECFP, SMARTS): what stages, splits and metrics use.

use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::smiles;

/// ECFP4 (Morgan radius 2) bit-vector width.
pub const ECFP_BITS: usize = 2048;

fn chematic_mol(s: &str) -> Result<chematic_core::Molecule, String> {
    smiles::parse(s).map_err(|e| format!("invalid SMILES {s:?}: {e}"))?;
    chematic_smiles::parse(s.trim()).map_err(|e| format!("invalid SMILES {s:?}: {e}"))
}

/// Canonical SMILES of a valid molecule (aromatic input stays aromatic: plinth
/// does not re-perceive aromaticity, so a Kekulé and an aromatic spelling of
/// one molecule canonicalise differently).
pub fn canonical(s: &str) -> Result<String, String> {
    Ok(chematic_smiles::canonical_smiles(&chematic_mol(s)?))
}

/// Canonical SMILES of the Bemis–Murcko scaffold; empty for acyclic molecules.
pub fn scaffold(s: &str) -> Result<String, String> {
    let m = smiles::parse(s).map_err(|e| format!("invalid SMILES {s:?}: {e}"))?;
    let frame = m.murcko_smiles();
    if frame.is_empty() {
        return Ok(String::new());
    }
    canonical(&frame).map_err(|e| format!("scaffold of {s:?} ({frame}) did not parse: {e}"))
}

/// Indices of the set ECFP4 bits.
pub fn ecfp4_bits(s: &str) -> Result<Vec<u32>, String> {
    let fp = chematic_fp::ecfp4(&chematic_mol(s)?);
    Ok((0..ECFP_BITS).filter(|&b| fp.get(b)).map(|b| b as u32).collect())
}

/// ECFP4 as 32 64-bit words, for fast Tanimoto over many molecules.
pub type Words = [u64; ECFP_BITS / 64];

pub fn ecfp4_words(s: &str) -> Result<Words, String> {
    let mut w = [0u64; ECFP_BITS / 64];
    for b in ecfp4_bits(s)? {
        w[b as usize / 64] |= 1 << (b % 64);
    }
    Ok(w)
}

/// Tanimoto similarity of two word-packed fingerprints.
pub fn tanimoto_words(a: &Words, b: &Words) -> f64 {
    let (mut inter, mut union) = (0u32, 0u32);
    for (x, y) in a.iter().zip(b) {
        inter += (x & y).count_ones();
        union += (x | y).count_ones();
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Tanimoto similarity of two ECFP4 fingerprints given as set-bit lists (sorted).
pub fn tanimoto(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// A randomized (non-canonical) SMILES of the same molecule: augmentation and synthetic data.
pub fn randomized(s: &str, seed: u64) -> Result<String, String> {
    Ok(chematic_smiles::random_smiles(&chematic_mol(s)?, seed))
}

/// One structural alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    pub name: String,
    pub smarts: String,
    /// A molecule the alert must match (checked by the tests and on load).
    pub example: String,
}

#[derive(Debug, Deserialize)]
struct AlertFile {
    alert: Vec<Alert>,
}

/// A list of alerts with their compiled SMARTS.
#[derive(Debug, Clone)]
pub struct Alerts {
    alerts: Vec<(Alert, std::sync::Arc<chematic_smarts::QueryMolecule>)>,
}

const DEFAULT_ALERTS: &str = include_str!("../alerts/default.toml");

impl Alerts {
    pub fn parse(toml_text: &str, origin: &str) -> Result<Self, String> {
        let file: AlertFile = toml::from_str(toml_text).map_err(|e| format!("{origin}: {e}"))?;
        let mut alerts = Vec::new();
        for a in file.alert {
            let q = chematic_smarts::parse_smarts(&a.smarts)
                .map_err(|e| format!("{origin}: alert {:?} has bad SMARTS {:?}: {e:?}", a.name, a.smarts))?;
            alerts.push((a, std::sync::Arc::new(q)));
        }
        if alerts.is_empty() {
            return Err(format!("{origin} lists no [[alert]]"));
        }
        Ok(Alerts { alerts })
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("alerts file {}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// [`Alerts::from_file`] read and compiled once per path and process (a stage
    /// calls this for every record).
    pub fn from_file_cached(path: &Path) -> Result<std::sync::Arc<Alerts>, String> {
        static CACHE: std::sync::Mutex<Vec<(std::path::PathBuf, std::sync::Arc<Alerts>)>> =
            std::sync::Mutex::new(Vec::new());
        let mut cache = CACHE.lock().map_err(|_| "alerts cache lock poisoned".to_string())?;
        if let Some((_, a)) = cache.iter().find(|(p, _)| p == path) {
            return Ok(a.clone());
        }
        let alerts = std::sync::Arc::new(Self::from_file(path)?);
        cache.push((path.to_path_buf(), alerts.clone()));
        Ok(alerts)
    }

    /// The shipped list (`alerts/default.toml`).
    pub fn default_list() -> Result<&'static Alerts, String> {
        static LIST: OnceLock<Result<Alerts, String>> = OnceLock::new();
        LIST.get_or_init(|| Alerts::parse(DEFAULT_ALERTS, "alerts/default.toml")).as_ref().map_err(Clone::clone)
    }

    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().map(|(a, _)| a)
    }

    /// The first alert `smiles` matches, if any.
    pub fn first_match(&self, smiles: &str) -> Result<Option<&Alert>, String> {
        let mol = chematic_mol(smiles)?;
        Ok(self.alerts.iter().find(|(_, q)| !chematic_smarts::find_matches(q, &mol).is_empty()).map(|(a, _)| a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_smiles_is_stable_across_spellings() {
        let c = canonical("OCC").expect("ethanol");
        assert_eq!(canonical("CCO").expect("ethanol"), c);
        assert_eq!(canonical(&c).expect("again"), c, "canonical of canonical is itself");
        for (seed, s) in [(1, "CC(=O)Oc1ccccc1C(=O)O"), (2, "Cn1cnc2c1c(=O)n(C)c(=O)n2C")] {
            let r = randomized(s, seed).expect("random");
            assert_eq!(canonical(&r).expect("r"), canonical(s).expect("s"), "{r} vs {s}");
        }
    }

    #[test]
    fn every_shipped_alert_catches_its_example_and_common_drugs_pass() {
        let alerts = Alerts::default_list().expect("default alerts");
        assert!(alerts.len() >= 15);
        for a in alerts.iter() {
            let hit = alerts.first_match(&a.example).expect("example parses");
            assert!(hit.is_some(), "alert {:?} does not match its example {}", a.name, a.example);
        }
        let names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
        assert!(names.iter().any(|n| n.contains("P-F")) && names.iter().any(|n| n.contains("P-CN")));
        for (drug, s) in [
            ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"),
            ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
            ("ibuprofen", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"),
            ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"),
            ("metformin", "CN(C)C(=N)N=C(N)N"),
            ("diazepam", "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21"),
            ("nicotine", "CN1CCCC1c1cccnc1"),
            ("omeprazole", "COc1ccc2[nH]c(S(=O)Cc3ncc(C)c(OC)c3C)nc2c1"),
            ("atenolol", "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1"),
            ("loratadine", "CCOC(=O)N1CCC(=C2c3ccc(Cl)cc3CCc3cccnc32)CC1"),
        ] {
            let hit = alerts.first_match(s).expect(drug);
            assert!(hit.is_none(), "{drug} flagged by {:?}", hit.map(|a| &a.name));
        }
    }

    #[test]
    fn fingerprints_compare_by_tanimoto() {
        let a = ecfp4_bits("CCOc1ccccc1").expect("a");
        let b = ecfp4_bits("CCOc1ccccc1C").expect("b");
        let c = ecfp4_bits("C1CCNCC1").expect("c");
        assert_eq!(tanimoto(&a, &a), 1.0);
        assert!(tanimoto(&a, &b) > tanimoto(&a, &c));
        let (wa, wb) = (ecfp4_words("CCOc1ccccc1").expect("a"), ecfp4_words("CCOc1ccccc1C").expect("b"));
        assert!((tanimoto_words(&wa, &wb) - tanimoto(&a, &b)).abs() < 1e-12);
    }
}
