//! Reads SMILES, one per line, from stdin; prints `SMILES<TAB>1|0<TAB>reason` with
//! plinth's validity verdict (used to compare with RDKit; see
//! `scripts/smiles_validity_fixture.py`).

use std::io::BufRead;

fn main() {
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        match plinth_plugin_molecule::smiles::parse(&line) {
            Ok(_) => println!("{line}\t1\t"),
            Err(e) => println!("{line}\t0\t{e}"),
        }
    }
}
