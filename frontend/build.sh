#!/usr/bin/env bash
# Builds the browser app into dist/ (at the workspace root) for `pe serve --static-dir dist`:
#   1. installs what is missing: monaco-editor and binaryen (wasm-opt) from npm
#      (package-lock.json), wasm-bindgen-cli at the version Cargo.lock pins, trunk 0.21.14, brotli;
#   2. `trunk build --release --offline`, optimizing the wasm for size (opt-level z, fat LTO,
#      one codegen unit, abort on panic, stripped: the name section alone is a third of the
#      file) through CARGO_PROFILE_RELEASE_* variables, so the workspace's release profile
#      stays as it is for the server. wasm-bindgen then warns that the target_features section
#      is missing and falls back to detecting reference types from the exports, which is right;
#   3. wasm-opt -Oz (binaryen 132 from npm, run by node: Debian 12's binaryen 108 breaks the
#      wasm) on the app's wasm, with the features rustc's wasm32 target turns on;
#   4. writes .gz and .br beside every .js/.wasm/.css/.html/.ttf/.svg/.json file, which the
#      server sends to browsers that accept them (the originals stay).
# Usage: frontend/build.sh [--no-compress]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

compress=1
[ "${1:-}" = "--no-compress" ] && compress=0

# 1. Tools and packages.
if [ ! -f node_modules/monaco-editor/min/vs/loader.js ] || [ ! -x node_modules/.bin/wasm-opt ] ||
   [ ! -f node_modules/@xterm/xterm/lib/xterm.mjs ]; then
  if ! command -v npm >/dev/null; then
    step "apt: installing npm"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  step "npm ci (monaco-editor, @xterm/xterm, binaryen)"
  npm ci --no-audit --no-fund
fi

if ! command -v trunk >/dev/null || ! trunk --version | grep -q ' 0\.21\.14$'; then
  step "cargo install trunk 0.21.14 (about 7 minutes the first time)"
  cargo install --locked trunk --version 0.21.14
fi

wb=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ -z "$wb" ]; then
  echo "build.sh: Cargo.lock has no wasm-bindgen; run cargo check -p frontend first" >&2
  exit 1
fi
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$wb" ]; then
  step "cargo install wasm-bindgen-cli $wb (to match Cargo.lock)"
  cargo install wasm-bindgen-cli --version "=$wb"
fi

if [ "$compress" = 1 ] && ! command -v brotli >/dev/null; then
  step "apt: installing brotli"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends brotli >/dev/null
fi

rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# 2. Build. Crates are fetched first: trunk's --offline also keeps cargo offline.
step "cargo fetch"
cargo fetch --quiet
step "trunk build --release --offline"
CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
CARGO_PROFILE_RELEASE_LTO=fat \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_PROFILE_RELEASE_STRIP=true \
  trunk build --release --offline

# 3. wasm-opt. Trunk's own wasm-opt step stays off (index.html): with --offline it cannot fetch
# the binaryen it wants. The file keeps its hashed name (a new build gets a new hash anyway).
wasm=$(ls dist/*.wasm)
before=$(stat -c %s "$wasm")
step "wasm-opt -Oz (binaryen $(node_modules/.bin/wasm-opt --version | awk '{print $3}'))"
node_modules/.bin/wasm-opt -Oz --strip-debug --strip-producers \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$wasm" -o "$wasm.opt"
mv "$wasm.opt" "$wasm"
printf 'wasm-opt: %s -> %s bytes\n' "$before" "$(stat -c %s "$wasm")"

# 4. Precompress.
if [ "$compress" = 1 ]; then
  step "precompressing dist/ (gzip -9, brotli -q 11)"
  find dist -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.wasm' -o -name '*.css' -o -name '*.html' \
      -o -name '*.ttf' -o -name '*.svg' -o -name '*.json' \) -print0 |
    xargs -0 -P "$(nproc)" -n 8 sh -c 'for f; do gzip -9 -k -f -n "$f"; brotli -q 11 -f -k "$f"; done' sh
fi

printf 'dist/ ready: %s is %s bytes (%s gzip)\n' "$wasm" "$(stat -c %s "$wasm")" \
  "$(gzip -9 -c "$wasm" | wc -c)"
