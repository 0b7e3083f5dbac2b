#!/usr/bin/env python3
"""DeepChem's ScaffoldSplitter on RDKit, for the agreement test of plinth's split.

    python scripts/deepchem_scaffold.py SMILES_FILE [FRAC_VALID FRAC_TEST]

Reads one SMILES per line and prints, per line, `split<TAB>scaffold`: the split
(train, valid, test) DeepChem's algorithm gives it and its Bemis-Murcko scaffold
(`MurckoScaffoldSmiles(includeChirality=False)`), or `invalid<TAB>` when RDKit
cannot parse it. The algorithm is DeepChem's (deepchem/splits/splitters.py,
ScaffoldSplitter.split): groups by scaffold, sorted by (size, first index) largest
first, then train while it stays within the train share, else valid, else test.
"""
import sys

from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")


def main():
    smiles = [line.rstrip("\n") for line in open(sys.argv[1])]
    frac_valid = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    frac_test = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
    scaffold_of = {}
    groups = {}
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            continue
        scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
        scaffold_of[i] = scaffold
        groups.setdefault(scaffold, []).append(i)
    sets = sorted(groups.values(), key=lambda x: (len(x), x[0]), reverse=True)
    n = len(scaffold_of)
    train_cutoff = (1.0 - frac_valid - frac_test) * n
    valid_cutoff = (1.0 - frac_test) * n
    split = {}
    train, valid = 0, 0
    for members in sets:
        if train + len(members) > train_cutoff:
            if train + valid + len(members) > valid_cutoff:
                where = "test"
            else:
                where = "valid"
                valid += len(members)
        else:
            where = "train"
            train += len(members)
        for i in members:
            split[i] = where
    for i in range(len(smiles)):
        print(f"{split.get(i, 'invalid')}\t{scaffold_of.get(i, '')}")


if __name__ == "__main__":
    main()
