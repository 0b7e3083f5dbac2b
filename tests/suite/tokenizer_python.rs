//! A plinth `tokenizer.json` loads unchanged in Hugging Face's Python `tokenizers`
//! and encodes text to the same ids (the Python package is installed by `./dev setup`).

use std::process::Command;

use plinth_tokenizer::{PlinthTokenizer, TrainOptions};

#[test]
fn python_tokenizers_reads_our_file_and_agrees_on_ids() {
    let text = std::fs::read_to_string(plinth_tests::fixture_corpus()).expect("fixture");
    let docs: Vec<&str> = text.split("\n\n").collect();
    let tok = PlinthTokenizer::train(docs.iter(), &TrainOptions { vocab_size: 400, min_frequency: 2 }).expect("train");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).expect("save");
    let sample = "It was raining cats and dogs <mask> — Ünïcödé, 42 tabs\tand  spaces.";
    let script = "import sys, json\nfrom tokenizers import Tokenizer\nt = Tokenizer.from_file(sys.argv[1])\nprint(json.dumps(t.encode(sys.argv[2], add_special_tokens=False).ids))";
    let out = Command::new(plinth_tests::venv_python())
        .args(["-c", script])
        .arg(&path)
        .arg(sample)
        .output()
        .expect("run the project's Python; `./dev setup` creates it");
    assert!(
        out.status.success(),
        "python tokenizers failed (run `./dev setup`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_matches(['[', ']'])
        .split(',')
        .map(|s| s.trim().parse().expect("id"))
        .collect();
    assert_eq!(ids, tok.encode(sample).expect("encode"));
    assert!(ids.contains(&plinth_tokenizer::Special::Mask.id()), "special tokens are matched as units on both sides");
}
