//! Domains: what a plugin offers for inputs of its kind in a user's own data file
//! (`[task] data = { input = "smiles", domain = "molecule", ... }`). The host sends
//! the input column's values in one [`DomainRequest`]; the plugin answers one
//! [`DomainValue`] per value: the value as the model should read it (canonical),
//! or why it is not one; its feature indices for the baselines; and, when the
//! request names one of the domain's splits, the split it lands in.
//!
//! A split belongs to the domain because only the domain knows what must not leak
//! across it (a molecule's scaffold); it sees every accepted value at once, since a
//! split such as DeepChem's scaffold split orders whole groups.

use serde::{Deserialize, Serialize};

use crate::{FeatureSpec, Request, Split};

/// A domain component's spec (role `domain`, ABI minor 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// What a value is, in a few words (`"a molecule as SMILES"`).
    pub value: String,
    /// Splits the domain assigns (`split = NAME` in a file task), with a line each.
    #[serde(default)]
    pub splits: Vec<DomainSplitSpec>,
    /// Features the domain gives each value, which the host's baselines use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureSpec>,
}

/// One split a domain offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSplitSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// Values of one input column, and the split to assign to those the domain accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainRequest {
    pub values: Vec<String>,
    /// Ask for each accepted value's feature indices.
    #[serde(default)]
    pub features: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<DomainSplit>,
}

/// A split request: the domain's split `name` with the shares of accepted values for
/// validation and test; `seed` for a split that has a random part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSplit {
    pub name: String,
    pub validation_fraction: f64,
    pub test_fraction: f64,
    #[serde(default)]
    pub seed: u64,
}

/// The domain's answer for one value: accepted (`value` set, `reject` none) or
/// rejected with the reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainValue {
    /// The value as the model reads it (canonical form); empty when rejected.
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<u32>,
    /// The split of an accepted value, when the request asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
}

impl DomainValue {
    pub fn accepted(value: impl Into<String>) -> Self {
        DomainValue { value: value.into(), ..Default::default() }
    }

    pub fn rejected(reason: impl Into<String>) -> Self {
        DomainValue { reject: Some(reason.into()), ..Default::default() }
    }
}

impl Request for DomainRequest {
    type Reply = Vec<DomainValue>;
    const ROLE: &'static str = "domain";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_the_same_on_both_sides() {
        let reply = vec![
            DomainValue { features: vec![3, 9], split: Some(Split::Test), ..DomainValue::accepted("c1ccccc1") },
            DomainValue::rejected("unclosed ring 1"),
        ];
        let text = serde_json::to_string(&reply).expect("encode");
        assert_eq!(
            text,
            r#"[{"value":"c1ccccc1","features":[3,9],"split":"test"},{"value":"","reject":"unclosed ring 1"}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<DomainValue>>(&text).expect("decode"), reply);
        let req: DomainRequest = serde_json::from_str(r#"{"values": ["C"]}"#).expect("request");
        assert!(!req.features && req.split.is_none());
    }
}
