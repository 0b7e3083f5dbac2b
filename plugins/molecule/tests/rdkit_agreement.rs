//! plinth's SMILES validity against RDKit's on 10,000 strings (6,000 real molecules
//! from ESOL, BBBP and MOSES, 4,000 corrupted copies); the verdicts were written by
//! `scripts/smiles_validity_fixture.py` with RDKit 2025.09.3.

#[test]
fn validity_agrees_with_rdkit_on_at_least_99_percent() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/smiles_rdkit.tsv");
    let text = std::fs::read_to_string(path).expect("fixture");
    let (mut n, mut agree) = (0usize, 0usize);
    let mut disagreements = Vec::new();
    for line in text.lines().skip(1) {
        let (smiles, verdict) = line.rsplit_once('\t').expect("SMILES<TAB>verdict");
        let rdkit = verdict == "1";
        let ours = plinth_plugin_molecule::smiles::parse(smiles).is_ok();
        n += 1;
        if ours == rdkit {
            agree += 1;
        } else if disagreements.len() < 10 {
            disagreements.push(format!("{smiles} (RDKit {rdkit}, plinth {ours})"));
        }
    }
    let rate = agree as f64 / n as f64;
    eprintln!("validity agreement with RDKit: {agree}/{n} = {rate:.4}");
    assert_eq!(n, 10_000);
    assert!(rate >= 0.99, "agreement {rate:.4}; first disagreements: {disagreements:#?}");
}

#[test]
fn tokenizer_round_trips_every_esol_molecule() {
    // ESOL's SMILES are in the fixture's first 1,128 lines.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/smiles_rdkit.tsv");
    let text = std::fs::read_to_string(path).expect("fixture");
    let tok =
        tokenizers::Tokenizer::from_bytes(plinth_plugin_molecule::tokenizer_json().as_bytes()).expect("tokenizer");
    let unk = tok.token_to_id("<unk>").expect("unk");
    for line in text.lines().skip(1).take(1128) {
        let smiles = line.rsplit_once('\t').expect("row").0;
        let enc = tok.encode(smiles, false).expect("encode");
        assert!(!enc.get_ids().contains(&unk), "{smiles}: unknown token in {:?}", enc.get_tokens());
        assert_eq!(tok.decode(enc.get_ids(), false).expect("decode"), smiles);
    }
}
