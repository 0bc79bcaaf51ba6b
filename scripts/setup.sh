#!/usr/bin/env bash
# Installs everything Program Explorer needs on a Debian 12 machine and builds the slow parts
# (guest kernel, guest init, test image) into a cache outside the repo. Idempotent: a second run
# only checks and takes seconds. Used by scripts/run (`--for-run`: no debug build of pe, no
# busybox image) and scripts/test; safe to run by itself.
#
#   PE_CACHE_DIR   where built kernels and images are kept (default ~/.cache/program-explorer)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PE_CACHE_DIR:-$HOME/.cache/program-explorer}
export PE_CACHE_DIR=$CACHE
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ---- Debian packages --------------------------------------------------------------------------
APT_PACKAGES=(
  cpio                                  # the codec's reference tool in tests
  qemu-system-x86 qemu-system-data      # the microVM (qboot.rom is in qemu-system-data)
  crun                                  # runs the container inside the guest (copied into the initramfs)
  busybox-static                        # the test image that needs no download
  squashfs-tools erofs-utils mmdebstrap # image builder
  linux-source-6.12 bc flex bison libelf-dev libssl-dev xz-utils make gcc  # guest kernel
  musl-tools                            # static guest init
  chromium fonts-dejavu-core brotli     # browser tests (Playwright drives Debian's chromium), precompressed assets
  nats-server postgresql                # cluster mode and its tests (scripts/cluster, server/tests/cluster.rs)
  python3-venv                          # the Compiler Explorer client test installs cexpl into a venv
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  step "apt: all ${#APT_PACKAGES[@]} packages present"
fi

# ---- The unprivileged user QEMU switches to (`pe --qemu-user`, default: pe-vm) ------------------
if ! getent passwd pe-vm >/dev/null; then
  step "user: adding the system user pe-vm (QEMU drops to it after opening its files)"
  as_root useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pe-vm
else
  step "user: pe-vm present"
fi
# Each QEMU alive at one time runs as a uid of its own, from pe-vm's subordinate range (so an
# escaped QEMU cannot signal or trace another): reserve the range once.
QEMU_UIDS=1800000000-1800004095
if ! grep -q '^pe-vm:' /etc/subuid 2>/dev/null; then
  step "user: reserving uids $QEMU_UIDS for QEMU processes (pe-vm's subordinate range)"
  as_root usermod --add-subuids "$QEMU_UIDS" --add-subgids "$QEMU_UIDS" pe-vm
fi
# On a KVM host QEMU opens /dev/kvm before it switches user; nothing else is needed.

# ---- Rust toolchain and targets (pinned in rust-toolchain.toml) --------------------------------
cd "$ROOT"
toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -q musl ||
   ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -q wasm32; then
  step "rustup: installing $toolchain with wasm32 and musl targets"
  rustup toolchain install "$toolchain" --profile minimal -c rustfmt,clippy \
    -t wasm32-unknown-unknown,x86_64-unknown-linux-musl
else
  step "rustup: $toolchain with wasm32 and musl targets present"
fi

# ---- cargo-installed tools --------------------------------------------------------------------
cargo_tool() { # name version [cargo install args...]
  local name=$1 version=$2; shift 2
  if command -v "$name" >/dev/null && "$name" --version 2>/dev/null | grep -q "$version"; then
    step "cargo: $name $version present"
  else
    step "cargo: installing $name $version (several minutes on a fresh machine)"
    cargo install --quiet "$@"
  fi
}
# trunk 0.21.14 is the last release that builds on rustc 1.95.
cargo_tool trunk 0.21.14 --locked trunk --version 0.21.14
# wasm-bindgen-cli must equal the wasm-bindgen the frontend locks.
wb=$(awk '/^name = "wasm-bindgen"$/ {getline; sub(/version = /, ""); gsub(/"/, ""); print}' Cargo.lock)
if [ -n "$wb" ]; then
  cargo_tool wasm-bindgen "$wb" wasm-bindgen-cli --version "=$wb"
fi

# ---- Guest kernel, guest init, pe, test image ------------------------------------------------------
kernel=$("$ROOT/scripts/build-kernel.sh" | tee /dev/stderr | tail -n 1)
ln -sfn "$kernel" "$CACHE/vmlinux"
"$ROOT/scripts/build-guest.sh"
# scripts/run builds its own (release) pe, and its server builds busybox first: a first start
# does not wait for a debug build it never uses (about 5 minutes here).
if [ "${1:-}" = "--for-run" ]; then
  exit 0
fi
step "pe: building (debug, shared with the tests)"
cargo build --quiet --locked -p server
# The busybox image is built from Debian's busybox-static in a second: tests never wait for a
# package download. Other images: `target/debug/pe image build ID|--all`.
"$ROOT/target/debug/pe" image build busybox
