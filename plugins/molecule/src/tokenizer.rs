//! The atom-level SMILES tokenizer as a Hugging Face `tokenizer.json`: a regex
//! pre-tokenizer (Schwaller et al. 2019's SMILES pattern) and a word-level
//! vocabulary, decoded by fusing tokens back together. plinth's special tokens
//! keep ids 0–6; `<unk>` is 7.

use serde_json::json;

/// Splits SMILES into atoms (bracket atoms whole), bonds, branches and ring labels.
pub const PATTERN: &str =
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])";

const SPECIALS: [&str; 8] =
    ["<pad>", "<bos>", "<eos>", "<mask>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<unk>"];

/// Every non-special token: the organic subset, syntax, ring labels, and the
/// bracket atoms of MOSES, ESOL and BBBP plus common charged and isotopic forms.
pub fn vocabulary() -> Vec<String> {
    let mut v: Vec<String> = [
        "C", "c", "N", "n", "O", "o", "S", "s", "P", "p", "F", "Cl", "Br", "I", "B", "b", "(", ")", "=", "#", "-", "+",
        "\\", "/", ":", ".", "~", "@", "?", ">", "*", "$",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend((0..10).map(|d| d.to_string()));
    v.extend((10..40).map(|d| format!("%{d}")));
    for b in [
        "[nH]", "[H]", "[C@H]", "[C@@H]", "[C@]", "[C@@]", "[N+]", "[O-]", "[N-]", "[n+]", "[n-]", "[NH+]", "[NH2+]",
        "[NH3+]", "[nH+]", "[NH-]", "[NH]", "[N]", "[N@]", "[N@@]", "[N@+]", "[N@@+]", "[S]", "[S+]", "[S-]", "[S@]",
        "[S@@]", "[s+]", "[O+]", "[o+]", "[OH-]", "[OH+]", "[P]", "[P+]", "[PH]", "[P@]", "[P@@]", "[C-]", "[CH-]",
        "[CH2-]", "[C+]", "[CH]", "[CH2]", "[c-]", "[Cl]", "[Cl-]", "[Br-]", "[I-]", "[I+]", "[Na+]", "[Na]", "[K+]",
        "[Li+]", "[Ca++]", "[Ca+2]", "[Mg++]", "[Mg+2]", "[Zn++]", "[Zn+2]", "[H+]", "[2H]", "[13C]", "[13CH3]",
        "[se]", "[Se]", "[Si]", "[SiH2]", "[B-]", "[BH3-]", "[As]", "[Hg]", "[Pt]", "[Fe]", "[Sn]", "[Al]",
    ] {
        v.push(b.to_string());
    }
    v
}

/// The tokenizer as `tokenizer.json` text.
pub fn tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    for (i, t) in SPECIALS.iter().map(|s| s.to_string()).chain(vocabulary()).enumerate() {
        vocab.insert(t, json!(i));
    }
    let added: Vec<_> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": PATTERN}, "behavior": "Isolated", "invert": false},
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
    .to_string()
}
