//! A BPE tokenizer trained on the fixture corpus: encode then decode any text,
//! and decode any id sequence, without panicking.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plinth_tokenizer::{PlinthTokenizer, TrainOptions};

fn tokenizer() -> &'static PlinthTokenizer {
    static TOK: OnceLock<PlinthTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/corpus.txt"))
            .expect("fixture corpus");
        let opts = TrainOptions { vocab_size: 400, min_frequency: 2 };
        PlinthTokenizer::train(corpus.lines(), &opts).expect("train")
    })
}

fuzz_target!(|data: &[u8]| {
    let tok = tokenizer();
    let text = String::from_utf8_lossy(data);
    if let Ok(ids) = tok.encode(&text) {
        let _ = tok.decode(&ids);
    }
    let ids: Vec<u32> = data.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).collect();
    let _ = tok.decode(&ids);
    for &id in ids.iter().take(8) {
        let _ = tok.token_text(id);
    }
});
