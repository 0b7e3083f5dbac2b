#!/usr/bin/env python3
"""Writes tests/fixtures/data/: small user data files, one per file-task kind, and
files that are wrong in one way each. Deterministic (no randomness beyond a fixed
LCG); labels are simple functions of the input so a model can learn them.

    python3 scripts/data_fixtures.py
"""
import csv
import json
import os

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "data")


def lcg(seed):
    x = seed
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        yield (x >> 33) / 2**31


def molecules(n):
    out = []
    with open(os.path.join(ROOT, "smiles_rdkit.tsv")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            smiles, valid = line.rstrip("\n").split("\t")
            if valid == "1" and len(smiles) < 60:
                out.append(smiles)
            if len(out) == n:
                return out
    return out


def count(s, chars):
    return sum(s.count(c) for c in chars)


def write(name, header, rows, delimiter=","):
    with open(os.path.join(OUT, name), "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main():
    os.makedirs(OUT, exist_ok=True)
    mols = molecules(200)
    noise = lcg(7)
    # Regression: a made-up solubility; 4 SMILES that are not molecules (the domain rejects them).
    rows = [[m, round(2.0 - 0.08 * len(m) + 0.4 * count(m, "NO") + 0.2 * (next(noise) - 0.5), 3)] for m in mols]
    for at, bad in [(20, "C1CC"), (70, "c1ccc"), (120, "C(C"), (170, "Xx")]:
        rows.insert(at, [bad, 0.5])
    write("solubility.csv", ["smiles", "logS"], rows)
    # Multi-output regression, some values missing.
    rows = []
    for i, m in enumerate(mols):
        size = round(len(m) / 10, 2)
        polar = round(count(m, "NO") / 3, 2)
        rows.append([m, "" if i % 11 == 3 else size, "" if i % 7 == 5 else polar])
    write("properties.csv", ["smiles", "size", "polarity"], rows)
    # Binary with string labels.
    write("permeable.csv", ["smiles", "crosses"], [[m, "yes" if count(m, "NO") <= 3 else "no"] for m in mols])
    # Multi-label with missing entries (Tox21-style): TSV.
    rows = []
    for i, m in enumerate(mols):
        labels = [int("N" in m or "n" in m), int("O" in m or "o" in m), int(any(c.isdigit() for c in m))]
        rows.append([m] + ["" if (i * 3 + j) % 13 == 0 else v for j, v in enumerate(labels)])
    write("alerts.tsv", ["smiles", "nitrogen", "oxygen", "ring"], rows, delimiter="\t")
    # Multi-class text: three topics, JSON Lines.
    topics = {
        "sport": ["the team won the match", "a goal in the final minute", "the runner set a record", "fans cheered the players"],
        "food": ["the soup was hot and salty", "fresh bread from the oven", "a bowl of rice and beans", "the cake needs more sugar"],
        "weather": ["rain fell all night", "a cold wind from the north", "sunny skies and warm air", "snow covered the hills"],
    }
    extras = ["today", "again", "at last", "this week", "in town", "they said", "once more", "as usual"]
    with open(os.path.join(OUT, "topics.jsonl"), "w") as f:
        for i in range(201):
            topic = list(topics)[i % 3]
            text = f"{topics[topic][(i // 3) % 4]} {extras[(i // 12) % 8]}"
            f.write(json.dumps({"id": i, "text": text, "topic": topic}) + "\n")
    # Generation: a request and the task that answers it.
    packages = ["nginx", "git", "curl", "vim", "htop", "rsync", "tmux", "zip", "jq", "wget"]
    users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
    rows = []
    for i in range(200):
        if i % 2 == 0:
            p = packages[(i // 2) % 10]
            rows.append([f"install {p} (case {i})", f"ansible.builtin.package:\n  name: {p}\n  state: present"])
        else:
            u = users[(i // 2) % 10]
            rows.append([f"create the user {u} (case {i})", f"ansible.builtin.user:\n  name: {u}\n  state: present"])
    write("requests.csv", ["request", "task"], rows)
    # Files wrong in one way each.
    rows = [[m, round(0.1 * len(m), 2)] for m in mols[:100]]
    rows[10] = [mols[10], ""]
    rows[20] = [mols[20], "n/a"]
    rows[30] = [""] + [1.0]
    rows[40] = [mols[40]]
    write("bad_rows.csv", ["smiles", "logS"], rows)
    write("semicolons.csv", ["smiles;logS"], [[f"{m};{0.1 * len(m):.2f}"] for m in mols[:20]])
    write("no_label.csv", ["smiles", "weight"], [[m, len(m)] for m in mols[:20]])
    open(os.path.join(OUT, "empty.csv"), "w").close()
    write("text_labels.csv", ["smiles", "logS"], [[m, "soluble" if i % 2 else "insoluble"] for i, m in enumerate(mols[:20])])


if __name__ == "__main__":
    main()
