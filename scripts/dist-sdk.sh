#!/usr/bin/env bash
# Writes what plugin authors build against into DEST (the release tarball's
# share/sinkhost/): the WIT package, the Rust SDK as two crates that build
# outside this workspace, and the JS and Python helpers.
#
# The crates' manifests are the ones `cargo package` writes (workspace
# inheritance resolved); it drops path dependencies, so the SDK's path to its
# sibling sinkhost-trace-context is put back.
set -euo pipefail
dest=${1:?usage: scripts/dist-sdk.sh DEST}
cargo=${CARGO:-cargo}
mkdir -p "$dest"
"$cargo" package --quiet --no-verify --allow-dirty -p sinkhost-trace-context -p sinkhost-sdk
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
for crate in sinkhost-trace-context sinkhost-sdk; do
  rm -rf "${dest:?}/$crate" "$dest/$crate-$version"
  tar -xzf "target/package/$crate-$version.crate" -C "$dest"
  mv "$dest/$crate-$version" "$dest/$crate"
  rm -f "$dest/$crate/.cargo_vcs_info.json" "$dest/$crate/Cargo.toml.orig" "$dest/$crate/Cargo.lock"
done
sed -i '/^\[dependencies\.sinkhost-trace-context\]$/a path = "../sinkhost-trace-context"' \
  "$dest/sinkhost-sdk/Cargo.toml"
# In a plugin project the crates are workspace members: the project's
# resolver applies, and cargo warns about one of their own.
sed -i '/^resolver = /d' "$dest/sinkhost-sdk/Cargo.toml" "$dest/sinkhost-trace-context/Cargo.toml"
grep -q '^path = "../sinkhost-trace-context"$' "$dest/sinkhost-sdk/Cargo.toml" \
  || { echo "dist-sdk: the SDK manifest has no sinkhost-trace-context dependency to point at" >&2; exit 1; }
rm -rf "$dest/wit" && cp -r wit "$dest/wit"
# What JS and Python projects copy (`plugin new` writes the same files from
# the binary): the helpers and the TypeScript declarations.
rm -rf "$dest/js" "$dest/python"
mkdir -p "$dest/js" "$dest/python"
cp sdk/js/sinkhost.js sdk/js/sinkhost.d.ts "$dest/js/"
cp -r sdk/js/types "$dest/js/types"
cp sdk/python/sinkhost.py "$dest/python/"
