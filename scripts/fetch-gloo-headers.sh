#!/usr/bin/env bash
# Unpacks the Gloo headers that PyTorch's ProcessGroupGloo.hpp includes (the torch
# wheel ships c10d's headers and Gloo's compiled code, not Gloo's headers) from
# Debian's libgloo-dev, fetched with `apt-get download` (a package registry), checked
# against a pinned SHA-256. plinth-dist's C++ shim compiles against them; they only
# declare types that c10d holds by pointer, so the 2022 snapshot serves the 2.11
# library. Idempotent: prints the include folder and exits when it is there.
set -euo pipefail
version="0.0~git20220518.5b14351-3"
sha256="80529c9fd8af452faf489e686b94bf87075965c40673803810c4f41634b1e299"
cache="${PLINTH_CACHE_DIR:-$HOME/.cache/plinth}/packages"
dest="$cache/libgloo-dev-$version"
if [ -f "$dest/usr/include/gloo/rendezvous/store.h" ]; then
  echo "$dest/usr/include"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "plinth: fetching Gloo's headers (Debian libgloo-dev $version) into $dest" >&2
(cd "$tmp" && apt-get download "libgloo-dev=$version" >/dev/null 2>&1) || {
  echo "plinth: \`apt-get download libgloo-dev=$version\` failed; plinth-dist needs Gloo's headers (run \`apt-get update\` if the package index is stale)" >&2
  exit 1
}
deb="$(ls "$tmp"/libgloo-dev_*.deb)"
echo "$sha256  $deb" | sha256sum --check --quiet - || {
  echo "plinth: $deb does not match the pinned SHA-256 $sha256" >&2
  exit 1
}
mkdir -p "$cache"
dpkg-deb -x "$deb" "$tmp/x"
rm -rf "$dest.partial" && mv "$tmp/x" "$dest.partial" && mv "$dest.partial" "$dest"
echo "$dest/usr/include"
