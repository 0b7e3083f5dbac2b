# Sourced by ./dev and the justfile: puts the project-local virtual environment first,
# so torch-sys finds PyTorch 2.11.0 (LIBTORCH_USE_PYTORCH=1), and keeps cargo's
# target directory outside the clone so CI and fresh clones reuse the libtorch build.
# The directory is keyed by the clone's path: torch-sys records the absolute path of
# the libtorch it linked against, so a build cached for another clone's .venv must
# never be reused by this one.
plinth_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$plinth_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
plinth_key="$(printf '%s' "$plinth_root" | sha256sum | cut -c1-12)"
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/plinth/target-$plinth_key"
  # Which clone this cache belongs to, so scripts/gc-cache.sh can delete the caches of
  # clones that no longer exist (each is about 1-8 GB).
  if [ "$(cat "$CARGO_TARGET_DIR/plinth-clone" 2>/dev/null)" != "$plinth_root" ]; then
    mkdir -p "$CARGO_TARGET_DIR" && printf '%s\n' "$plinth_root" >"$CARGO_TARGET_DIR/plinth-clone"
  fi
fi
if ! compgen -G "$VIRTUAL_ENV/lib/python3*/site-packages/torch/lib/libtorch_cpu.so" >/dev/null; then
  echo "plinth: no PyTorch in $VIRTUAL_ENV; run ./dev setup (it installs torch 2.11.0 there)" >&2
  return 1 2>/dev/null || exit 1
fi
