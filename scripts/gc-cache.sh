#!/usr/bin/env bash
# Deletes the cargo target directories that plinth keeps outside its clones
# (${XDG_CACHE_HOME:-~/.cache}/plinth/target-<hash of the clone's path>, 1-8 GB each)
# whose clone no longer exists. scripts/env.sh records each one's clone in
# target-*/plinth-clone; a directory without that record is left alone and listed.
# Needs nothing but bash, so it works when the disk is too full for ./dev setup.
#
#   scripts/gc-cache.sh             delete the caches of deleted clones
#   scripts/gc-cache.sh --dry-run   only say what it would delete
set -euo pipefail
dry_run=0
case "${1:-}" in
  "") ;;
  --dry-run) dry_run=1 ;;
  -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "plinth: unknown argument '$1'; usage: scripts/gc-cache.sh [--dry-run]" >&2; exit 2 ;;
esac
[ "$#" -le 1 ] || { echo "plinth: too many arguments; usage: scripts/gc-cache.sh [--dry-run]" >&2; exit 2; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/plinth"
removed=0
for dir in "$cache"/target-*; do
  [ -d "$dir" ] || continue
  clone="$(head -n1 "$dir/plinth-clone" 2>/dev/null || true)"
  if [ -z "$clone" ]; then # no record (built before plinth kept one), or a write that failed
    echo "plinth: keeping $dir: it does not record its clone; delete it by hand if no clone uses it" >&2
    continue
  fi
  if [ -f "$clone/scripts/env.sh" ]; then
    continue # its clone is still there
  fi
  size="$(du -sh "$dir" 2>/dev/null | cut -f1)" || size="?"
  if [ "$dry_run" = 1 ]; then
    echo "would delete $dir ($size; its clone $clone is gone)"
  else
    rm -rf -- "$dir"
    echo "deleted $dir ($size; its clone $clone is gone)"
  fi
  removed=$((removed + 1))
done
[ "$removed" -gt 0 ] || echo "plinth: no build cache of a deleted clone in $cache"
