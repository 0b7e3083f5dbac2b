#!/usr/bin/env bash
# Creates (or repairs) the project-local Python environment that provides libtorch
# for tch, numpy for torch, and the `just` command runner. Idempotent: a second
# run with everything in place only checks versions and exits.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
torch_version="2.11.0"
just_version="1.59.0"
tokenizers_version="0.23.3" # Python side of the tokenizer.json compatibility test
transformers_version="5.23.0" # Python side of the Hugging Face interop tests and benchmarks
peft_version="0.21.2"         # PEFT adapters in the interop tests
rdkit_version="2026.9.1"      # the chemistry agreement tests (scaffold split, parsing)
numpy_spec="numpy>=2,<3"
extras=("$@") # extra requirement specs, e.g. for benchmarks

py="${PLINTH_PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "plinth: creating virtual environment in $venv" >&2
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"

have() { "$vpy" - "$@" <<'PY'
import importlib.metadata as m, sys
want = dict(a.split("==") for a in sys.argv[1:])
for name, ver in want.items():
    try:
        if m.version(name).split("+")[0] != ver:
            sys.exit(1)
    except m.PackageNotFoundError:
        sys.exit(1)
PY
}

# Disk a first install needs, measured (ARCHITECTURE.md, Environment), by where it goes:
# the venv (4.9 GB), the wheels pip downloads to TMPDIR before installing (2.6 GB) and
# the cold build in the cache (0.8 GB). Summed per file system and checked before pip
# starts, so a full disk stops here with what to free instead of pip's
# "No space left on device" halfway through.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/plinth"
tmp="${TMPDIR:-/tmp}"
mount_of() { df -P "$1" 2>/dev/null | awk 'NR == 2 { print $6 }'; }
free_kb() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }'; }
check_space() {
  local -A need=() where=()
  local path gb mount free
  while read -r path gb; do
    while [ ! -e "$path" ] && [ "$path" != / ]; do path="$(dirname "$path")"; done # not created yet
    mount="$(mount_of "$path")"
    [ -n "$mount" ] || continue # df cannot tell: let pip find out
    need[$mount]=$((${need[$mount]:-0} + gb))
    where[$mount]="${where[$mount]:+${where[$mount]}, }$path"
  done < <(printf '%s %s\n' "$venv" 5 "$tmp" 3 "$cache" 1)
  for mount in "${!need[@]}"; do
    free="$(free_kb "$mount")"
    if [ -n "$free" ] && [ "$free" -lt $((need[$mount] * 1024 * 1024)) ]; then
      echo "plinth: installing PyTorch and the first build need about ${need[$mount]} GB free on the file system" \
        "of ${where[$mount]}; it has $(awk -v kb="$free" 'BEGIN { printf "%.1f", kb / 1048576 }') GB. Free some" \
        "space (scripts/gc-cache.sh deletes the build caches of plinth clones that no longer exist), then run" \
        "./dev setup again." >&2
      exit 1
    fi
  done
}

pins=("torch==$torch_version" "rust-just==$just_version" "tokenizers==$tokenizers_version"
  "transformers==$transformers_version" "peft==$peft_version" "rdkit==$rdkit_version")
if ! have "${pins[@]}" || ! "$vpy" -c "import numpy" 2>/dev/null; then
  if ! have "torch==$torch_version"; then # the 5 GB part; a smaller pin alone needs little
    check_space
  fi
  echo "plinth: installing torch==$torch_version, numpy, tokenizers, transformers, peft, rdkit and just into $venv (about 5 GB, a few minutes the first time)" >&2
  "$vpy" -m pip install --quiet --disable-pip-version-check "${pins[@]}" "$numpy_spec"
fi
# The CUDA build of torch ships CUDA's runtime headers and NCCL's, but not the C
# runtime configuration (crt/) or libcu++ (nv/target) that ProcessGroupNCCL.hpp's
# includes need: with them plinth-dist's shim is built with NCCL (build.rs).
# Versions of CUDA 13.0, the toolkit torch 2.11's default wheel was built with.
cuda_pins=("nvidia-cuda-crt==13.0.88" "nvidia-cuda-cccl==13.0.85")
if "$vpy" -c 'import importlib.metadata as m, sys; sys.exit(not m.version("nvidia-cuda-runtime").startswith("13.0."))' 2>/dev/null \
  && ! have "${cuda_pins[@]}"; then
  echo "plinth: installing CUDA headers for NCCL (${cuda_pins[*]})" >&2
  "$vpy" -m pip install --quiet --disable-pip-version-check --no-deps "${cuda_pins[@]}"
fi
if [ "${#extras[@]}" -gt 0 ]; then
  "$vpy" -m pip install --quiet --disable-pip-version-check "${extras[@]}"
fi
