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
numpy_spec="numpy>=2,<3"
space_gb=9    # torch missing: measured peak of a first install plus a cold build (ARCHITECTURE.md, Environment)
download_gb=4 # the wheels pip downloads to TMPDIR first (2.6 GB), when that is another file system
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

# Free space in kB on the file system that holds path $1.
free_kb() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }
# Stops with what to do when the file system holding $2 has less than $1 GB free,
# before pip half-installs a 5 GB environment and dies with "No space left on device".
need_space() {
  local gb="$1" where="$2" free
  free="$(free_kb "$where")"
  if [ -n "$free" ] && [ "$free" -lt $((gb * 1024 * 1024)) ]; then
    echo "plinth: installing PyTorch and the build need about $gb GB free on the file system of $where;" \
      "it has $(awk -v kb="$free" 'BEGIN { printf "%.1f", kb / 1048576 }') GB. Free some space (scripts/gc-cache.sh deletes the build caches" \
      "of plinth clones that no longer exist), then run ./dev setup again." >&2
    exit 1
  fi
}

pins=("torch==$torch_version" "rust-just==$just_version" "tokenizers==$tokenizers_version"
  "transformers==$transformers_version" "peft==$peft_version")
if ! have "${pins[@]}" || ! "$vpy" -c "import numpy" 2>/dev/null; then
  if ! have "torch==$torch_version"; then # the 5 GB part; a smaller pin alone needs little
    need_space "$space_gb" "$root"
    tmp="${TMPDIR:-/tmp}"
    if [ "$(df -P "$tmp" | awk 'NR == 2 { print $1 }')" != "$(df -P "$root" | awk 'NR == 2 { print $1 }')" ]; then
      need_space "$download_gb" "$tmp" # pip unpacks the wheels there
    fi
  fi
  echo "plinth: installing torch==$torch_version, numpy, tokenizers, transformers, peft and just into $venv (about 5 GB, a few minutes the first time)" >&2
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
