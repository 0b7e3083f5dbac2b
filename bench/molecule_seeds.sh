#!/usr/bin/env bash
# The molecule plugin's property tasks on DeepChem's scaffold split, three seeds each
# (initialisation and batch order; the split has no seed), with the baselines of every
# run: `bench/molecule_seeds.sh [esol|bbbp ...]` (default: esol bbbp). Prints one line
# per run and the mean ± standard deviation (n - 1) of the test metric per task.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
plinth="$CARGO_TARGET_DIR/release/plinth"
tasks=("$@")
[ "${#tasks[@]}" -gt 0 ] || tasks=(esol bbbp)
"$plinth" pretrain --config configs/pretrain/molecule-tiny.toml --resume
mkdir -p runs/bench
for task in "${tasks[@]}"; do
    for seed in 0 1 2; do
        out="runs/finetune/$task-seed$seed"
        cfg="runs/bench/$task-seed$seed.toml"
        sed -e "s|^out_dir = .*|out_dir = \"$out\"|" -e "s|^seed = .*|seed = $seed|" "configs/finetune/$task.toml" >"$cfg"
        start=$(date +%s)
        "$plinth" finetune --config "$cfg" --resume
        echo "$task seed $seed: finetune wall $(($(date +%s) - start)) s"
    done
    python - "$task" <<'PY'
import json, statistics, sys
task = sys.argv[1]
reports = [json.load(open(f"runs/finetune/{task}-seed{s}/report.json")) for s in range(3)]
metric = reports[0]["metric"]
values = [r["test"][metric] for r in reports]
print(f"{task} {metric}: " + ", ".join(f"{v:.3f}" for v in values)
      + f"; mean {statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}")
for name in sorted(reports[0]["baselines"]):
    b = [r["baselines"][name][metric] for r in reports]
    print(f"  {name}: {statistics.mean(b):.3f} (same split; deterministic fits vary {max(b) - min(b):.3g})")
print("  rows", reports[0]["rows"], "train seconds", [round(r["train_seconds"]) for r in reports])
PY
done
