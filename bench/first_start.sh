#!/usr/bin/env bash
# Measures a first start as a new user sees it: `scripts/run` in a fresh clone, with an empty
# HOME (so no cargo-installed tools, crate or npm caches, guest kernel, images or data), and
# reports the time to the first page and to every image built (issue #21).
#
#   bench/first_start.sh [WORK_DIR]     (default: a new directory under /tmp)
#
# What it cannot take away: the Debian packages (scripts/setup.sh installs them with apt; a few
# minutes on a new machine) and the Rust toolchain (RUSTUP_HOME is kept: rustup-init and the
# toolchain download are about a minute). Everything else is built or downloaded as on a bare
# machine. The server listens on PE_BENCH_PORT (default 18090) and is stopped at the end; the
# work directory is left for inspection (remove it: it holds two Rust builds and every image).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/pe-first-start.XXXXXX)}
PORT=${PE_BENCH_PORT:-18090}
mkdir -p "$WORK/home/.cargo/bin"
RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
# The toolchain's proxies only: cargo-installed tools (trunk, wasm-bindgen) must be built anew.
for tool in cargo rustc rustup rustfmt cargo-fmt cargo-clippy clippy-driver rustdoc; do
  ln -sfn "$HOME/.cargo/bin/$tool" "$WORK/home/.cargo/bin/$tool"
done
[ -d "$WORK/repo" ] || git clone --quiet "$SRC" "$WORK/repo"

log=$WORK/run.log
start=$(date +%s.%N)
elapsed() { awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.0f", n - s }'; }
env -i HOME="$WORK/home" RUSTUP_HOME="$RUSTUP_HOME" CARGO_HOME="$WORK/home/.cargo" \
  PATH="$WORK/home/.cargo/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" TERM=dumb \
  setsid "$WORK/repo/scripts/run" --listen "127.0.0.1:$PORT" >"$log" 2>&1 &
pid=$!
trap 'kill -- -"$pid" 2>/dev/null || true' EXIT

echo "first_start: scripts/run in $WORK/repo, log in $log"
first_page=""
while kill -0 "$pid" 2>/dev/null; do
  if [ -z "$first_page" ] && curl -fs -o /dev/null "http://127.0.0.1:$PORT/"; then
    first_page=$(elapsed)
    echo "first_start: first page after ${first_page} s"
  fi
  if [ -n "$first_page" ]; then
    # Every container's image is there when each is built or has failed.
    read -r waiting total failed < <(curl -fsS "http://127.0.0.1:$PORT/api/v1/containers" |
      python3 -c 'import json, sys
c = json.load(sys.stdin)
st = lambda x: (x["image_status"].get("build") or {}).get("state")
waiting = [x for x in c if not x["image_status"]["built"] and st(x) != "failed"]
failed = [x["id"] for x in c if st(x) == "failed"]
print(len(waiting), len(c), ",".join(failed) or "-")') || { sleep 5; continue; }
    if [ "$waiting" = 0 ]; then
      echo "first_start: all $total images built after $(elapsed) s (failed: $failed)"
      grep -E 'image built|failed' "$log" | tail -n 60 || true
      exit 0
    fi
  fi
  sleep 5
done
echo "first_start: scripts/run exited early; the end of $log:" >&2
tail -n 40 "$log" >&2
exit 1
