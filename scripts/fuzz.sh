#!/usr/bin/env bash
# Runs plinth's cargo-fuzz targets (fuzz/): `scripts/fuzz.sh [SECONDS] [TARGET...]`.
# Each target runs SECONDS (default 120) from a corpus seeded with the project's own
# files; the last line of each run (executions, seconds, crashes) is collected in
# fuzz/artifacts/summary.tsv. Crashing inputs land in fuzz/artifacts/TARGET/: fix the
# bug, then copy the input to fuzz/regressions/TARGET/, which the stable test suite
# replays. Installs what it needs (the nightly toolchain, cargo-fuzz), idempotently.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

seconds="${1:-120}"
shift || true
all=(smiles tokenizer pipeline expr plugin_header safetensors ansible)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

# cargo fuzz needs nightly rustc flags (-Zsanitizer, sancov passes).
toolchain=(+nightly)
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "plinth: installing the nightly toolchain for cargo fuzz"
    if ! rustup toolchain install nightly --profile minimal; then
        # No nightly to be had: stable rustc accepts nightly flags under RUSTC_BOOTSTRAP.
        echo "plinth: no nightly toolchain; fuzzing with stable rustc and RUSTC_BOOTSTRAP=1"
        toolchain=()
        export RUSTC_BOOTSTRAP=1
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "plinth: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Its own build cache: the instrumented build shares nothing with the normal one.
export CARGO_TARGET_DIR="${PLINTH_CACHE:-$HOME/.cache/plinth}/fuzz-target"
# No sanitizer: plinth has no unsafe code on these paths, so a panic, an abort, a
# timeout or running out of memory is what there is to find, and the build is faster.
flags=(--sanitizer none --release --debug-assertions)

seed() {
    local t="$1" d="fuzz/corpus/$1"
    mkdir -p "$d"
    [ -n "$(ls -A "$d")" ] && return
    case "$t" in
        smiles) sed -n '2,201p' tests/fixtures/smiles_rdkit.tsv | cut -f1 | split -l 1 - "$d/s" ;;
        tokenizer) head -c 4000 tests/fixtures/corpus.txt | split -b 200 - "$d/t" ;;
        pipeline) cp configs/pipelines/*.toml "$d/" ;;
        expr) grep -h '^expr' configs/pipelines/*.toml | sed 's/^expr *= *//; s/^"//; s/"$//' | split -l 1 - "$d/e" ;;
        plugin_header) cp /usr/lib/x86_64-linux-gnu/libdl.so.2 "$d/libdl.so" 2>/dev/null || printf '\177ELF' >"$d/elf" ;;
        safetensors) python - "$d/seed.safetensors" <<'PY'
import sys, torch
from safetensors.torch import save_file
save_file({"w": torch.randn(3, 4), "b": torch.zeros(4, dtype=torch.bfloat16), "i": torch.arange(5)}, sys.argv[1])
PY
            ;;
        ansible) python - "$d" <<'PY'
import pathlib, sys, zipfile, glob
out = pathlib.Path(sys.argv[1])
wheels = glob.glob(str(pathlib.Path.home() / ".cache/plinth/**/ansible_core-*.whl"), recursive=True)
n = 0
for w in wheels[:1]:
    with zipfile.ZipFile(w) as z:
        for name in z.namelist():
            if "/modules/" in name and name.endswith(".py") and n < 40:
                text = z.read(name)
                if len(text) < 60000:
                    (out / f"m{n}.py").write_bytes(text); n += 1
if n == 0:
    (out / "m.py").write_text("DOCUMENTATION = r'''\nmodule: x\noptions:\n  name:\n    type: str\n'''\nEXAMPLES = r'''\n- name: Do it\n  ansible.builtin.x:\n    name: y\n'''\n")
PY
            ;;
    esac
}

mkdir -p fuzz/artifacts
summary=fuzz/artifacts/summary.tsv
[ -f "$summary" ] || printf 'target\tseconds\texecutions\tcrash_files\texit\tdate\n' >"$summary"
status=0
for t in "${targets[@]}"; do
    seed "$t"
    log="fuzz/artifacts/$t.log"
    echo "plinth: fuzzing $t for ${seconds}s (log: $log)"
    started=$(date +%s)
    set +e
    (cd fuzz && cargo "${toolchain[@]}" fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -max_len=65536 -print_final_stats=1) >"$log" 2>&1
    rc=$?
    set -e
    took=$(($(date +%s) - started))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    crashes=$(ls fuzz/artifacts/"$t"/ 2>/dev/null | grep -c -E '^(crash|oom|timeout|leak)-' || true)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$took" "${runs:-?}" "$crashes" "$rc" "$(date -u +%F)" >>"$summary"
    if [ $rc -ne 0 ]; then
        status=1
        echo "plinth: $t found a failing input (exit $rc); see $log and fuzz/artifacts/$t/"
        tail -n 30 "$log"
    fi
done
column -t "$summary"
exit $status
