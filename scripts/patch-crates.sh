#!/usr/bin/env bash
# Materialises the patched crates that Cargo.toml's [patch.crates-io] points at:
# for each patches/<crate>-<version>.patch, the pristine <crate>-<version>.crate
# from crates.io (checked against the checksum below), unpacked into
# target/patched/<crate>-<version>/ with the patch applied. Only our own diffs
# live in the repository, never a copy of the crate. `make` runs this before
# any cargo command; patches/README.md says why each patch exists and when it
# can be dropped.
set -euo pipefail
cd "$(dirname "$0")/.."

# The sha256 of each pristine .crate, as Cargo.lock recorded it before the
# patch replaced the registry entry.
checksum() {
  case $1 in
    async-nats-0.51.0) echo a4f92759f418774b78c36ef07885849150ce950c67d9bcdeff8a9c253f57d9a1 ;;
  esac
}

sha256() {
  if command -v sha256sum > /dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

OUT=target/patched
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}

# The .crate file, from cargo's download cache or fetched into it.
pristine() {
  local name=$1 version=$2 found
  found=$(ls "$CARGO_HOME"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -n 1 || true)
  if [[ -z $found ]]; then
    local scratch="$OUT/.fetch-$name-$version"
    mkdir -p "$scratch/src"
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\n%s = { version = "=%s", default-features = false }\n' \
      "$name" "$version" > "$scratch/Cargo.toml"
    : > "$scratch/src/lib.rs"
    cargo fetch --quiet --manifest-path "$scratch/Cargo.toml" >&2
    rm -rf "$scratch"
    found=$(ls "$CARGO_HOME"/registry/cache/*/"$name-$version.crate" | head -n 1)
  fi
  echo "$found"
}

for patch in patches/*.patch; do
  crate=$(basename "$patch" .patch)          # e.g. async-nats-0.51.0
  name=${crate%-*} version=${crate##*-}
  dest="$OUT/$crate"
  stamp="$dest/.sinkhost-patch"
  want=$(sha256 "$patch")
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    touch "$stamp"
    continue
  fi
  file=$(pristine "$name" "$version")
  got=$(sha256 "$file") expected=$(checksum "$crate")
  if [[ $got != "$expected" ]]; then
    echo "error: $file has sha256 $got, expected ${expected:-<none listed in $0>}" >&2
    exit 1
  fi
  rm -rf "$dest" && mkdir -p "$OUT"
  tar -xzf "$file" -C "$OUT"
  patch --quiet --forward --strip=1 --directory="$dest" < "$patch"
  echo "$want" > "$stamp"
  echo "patched $crate with $patch"
done
