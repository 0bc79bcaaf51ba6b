#!/usr/bin/env bash
# Builds what runs inside the microVM, into the cache (PE_CACHE_DIR, default
# ~/.cache/program-explorer):
#   initramfs.cpio          the guest init (static musl pe-init) + Debian's crun and its libraries
#   images/                 the busybox test image (squashfs lz4 from busybox-static), so tests
#                           never wait for a package download
# Idempotent: each part is rebuilt only when its inputs changed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PE_CACHE_DIR:-$HOME/.cache/program-explorer}
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
mkdir -p "$CACHE"

# ---- initramfs --------------------------------------------------------------------------------
step "guest: building pe-init (static musl)"
(cd "$ROOT" && cargo build --quiet --release -p guest --target x86_64-unknown-linux-musl)
init="$ROOT/target/x86_64-unknown-linux-musl/release/pe-init"
crun=$(command -v crun)
key=$(cat "$init" "$crun" "$0" | sha256sum | cut -c1-16)
if [ "$(cat "$CACHE/initramfs.key" 2>/dev/null)" = "$key" ] && [ -f "$CACHE/initramfs.cpio" ]; then
  step "guest: initramfs up to date"
else
  step "guest: packing initramfs (pe-init + crun + its libraries)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp"/{proc,sys,dev,run,mnt,tmp,usr/bin}
  install -m 0755 "$init" "$tmp/init"
  # The kernel opens /dev/console for init's stdin/stdout/stderr; without a console it fails and
  # the init's runtime falls back to /dev/null. Both must exist before devtmpfs is mounted.
  mknod -m 0600 "$tmp/dev/console" c 5 1
  mknod -m 0666 "$tmp/dev/null" c 1 3
  install -m 0755 "$crun" "$tmp/usr/bin/crun"
  # Each library at the path the dynamic loader looks for it, as a real file (no symlinks).
  ldd "$crun" | awk '/=>/ {print $1, $3} /^\t\/lib64/ {print $1, $1}' | while read -r name path; do
    case "$name" in /*) dest="$name" ;; *) dest="$(dirname "$path")/$name" ;; esac
    mkdir -p "$tmp$(dirname "$dest")"
    cp -L "$path" "$tmp$dest"
  done
  (cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$CACHE/initramfs.cpio.tmp"
  mv "$CACHE/initramfs.cpio.tmp" "$CACHE/initramfs.cpio"
  echo "$key" > "$CACHE/initramfs.key"
  rm -rf "$tmp"; trap - EXIT
fi

ls -la "$CACHE/initramfs.cpio" >&2
