#!/usr/bin/env bash
# Builds postern (and the smallest Pingora proxy) against a patched copy of
# Pingora 0.9.1, for measuring; the default build never sees the patches.
#
#   benches/pingora-patches/build.sh                  # every *.patch here
#   benches/pingora-patches/build.sh 01-foo 03-bar    # only these
#   EXAMPLE=1 benches/pingora-patches/build.sh ...    # also examples/pingora-minimal
#
# Writes target/pingora-patched/NAME/postern (NAME: "all", or the chosen
# patches joined by "+"), then e.g.
#   benches/instructions.sh target/release/postern target/pingora-patched/all/postern
#   benches/compare/ab.sh target/release/postern target/pingora-patched/all/postern
#
# How: each patch is a unified diff against the registry's crate sources
# (paths such as pingora-core-0.9.1/src/...). The script copies the crates a
# patch touches from ~/.cargo/registry into $PATCHED_SRC/NAME (outside the
# repository, so cargo does not take them for workspace members), applies
# the patches, and builds the release profile with `[patch.crates-io]`
# given on the command line. The build shares target/ with the default one
# (only the patched crates and what depends on them are rebuilt) and
# Cargo.lock is restored afterwards: the patch makes cargo rewrite it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)
PATCHED_SRC=${PATCHED_SRC:-/tmp/postern-pingora-patched}

patches=()
if (($#)); then
  for name in "$@"; do patches+=("$here/${name%.patch}.patch"); done
  variant=$(IFS=+; echo "${*%.patch}")
else
  patches=("$here"/*.patch)
  variant=all
fi
for p in "${patches[@]}"; do [[ -f $p ]] || { echo "no patch $p" >&2; exit 2; }; done

src=$PATCHED_SRC/$variant
stamp=$(cat "${patches[@]}" | sha256sum | cut -c1-16)
if [[ $(cat "$src/.stamp" 2>/dev/null) != "$stamp" ]]; then
  # A fresh copy only when the patches changed: new files mean a rebuild.
  rm -rf "$src"
  mkdir -p "$src"
  crates=$(grep -h '^+++ ' "${patches[@]}" | sed -E 's|^\+\+\+ (b/)?([^/]+)/.*|\2|' | sort -u)
  for crate in $crates; do cp -r "$registry/$crate" "$src/"; done
  for p in "${patches[@]}"; do patch -d "$src" -p1 --quiet --forward <"$p"; done
  echo "$stamp" >"$src/.stamp"
fi

config=()
for dir in "$src"/*/; do
  crate=$(basename "$dir" | sed -E 's/-[0-9]+\.[0-9]+\.[0-9]+$//')
  config+=(--config "patch.crates-io.$crate.path=\"$dir\"")
done

cd "$root"
cp Cargo.lock "$src/Cargo.lock.orig"
trap 'cp "$src/Cargo.lock.orig" "$root/Cargo.lock"' EXIT
targets=(--bin postern)
[[ -n ${EXAMPLE:-} ]] && targets+=(--example pingora-minimal)
cargo build --release "${config[@]}" "${targets[@]}"
out=target/pingora-patched/$variant
mkdir -p "$out"
cp target/release/postern "$out/postern"
[[ -n ${EXAMPLE:-} ]] && cp target/release/examples/pingora-minimal "$out/pingora-minimal"
# target/release/postern is now the patched one until the next default
# `cargo build --release` (which finds its own build and only relinks).
echo "built $out/postern${EXAMPLE:+ and $out/pingora-minimal} (patches: ${patches[*]##*/})"
