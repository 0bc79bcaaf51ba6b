#!/usr/bin/env bash
# The second server of the browser tests: a first start. `pe serve --build-missing` on a new,
# empty image store and a catalog of two containers, busybox (built in a second from the host's
# busybox) and jq (Debian packages: half a minute or more), so that jq is still queued or
# building when the page opens. The package cache is hard-linked from the main image store (only
# the package lists are downloaded) and the kernel and initramfs are the main cache's.
# Usage: first-start-server.sh PORT
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=$1
cache=${PE_CACHE_DIR:-$HOME/.cache/program-explorer}
# One directory per port, emptied at the start: Playwright may kill this script before its
# trap runs, and the next run then starts from nothing all the same.
dir=/tmp/pe-e2e-first-start-$port
# Removes $dir. An image build stopped half-way may still be cleaning up (mmdebstrap unmounts
# what it mounted in its new root): wait for it, unmount what is left, and never cross a mount.
clean_dir() {
  for _ in $(seq 120); do pgrep -f "mmdebstrap.*$dir/" >/dev/null || break; sleep 0.5; done
  awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r \
    | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$dir" 2>/dev/null || true
}
clean_dir
mkdir -p "$dir/meta" "$dir/images"
cp "$root/container-meta/busybox.toml" "$root/container-meta/jq.toml" "$dir/meta/"
if [ -d "$cache/images/apt-cache" ]; then
  cp -al "$cache/images/apt-cache" "$dir/images/apt-cache" 2>/dev/null \
    || cp -a "$cache/images/apt-cache" "$dir/images/apt-cache"
fi
"$root/target/debug/pe" --cache-dir "$dir" --kernel "$cache/vmlinux" \
  --initramfs "$cache/initramfs.cpio" --meta-dir "$dir/meta" \
  serve --build-missing --listen "127.0.0.1:$port" --static-dir "$root/dist" \
  --data-dir "$dir/data" --rate-per-minute 0 --warm none &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; clean_dir' EXIT
trap 'exit 0' TERM INT
wait "$pid"
