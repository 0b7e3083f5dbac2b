//! The SMILES parser on arbitrary text: never panics, and what it accepts has a
//! canonical form that is a fixed point (canonical(canonical(s)) == canonical(s)).
#![no_main]
use libfuzzer_sys::fuzz_target;
use plinth_plugin_molecule::chem;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(c) = chem::canonical(s) {
        let again = chem::canonical(&c).unwrap_or_else(|e| panic!("canonical {c:?} of {s:?} does not parse: {e}"));
        assert_eq!(again, c, "canonical form of {s:?} is not stable");
    }
});
