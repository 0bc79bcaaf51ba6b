#!/usr/bin/env bash
# Fuzz smoke test: runs every fuzz target for FUZZ_SECONDS seconds (default 20), each starting
# from the committed seeds only (copied to a temporary corpus, so the checkout is not modified),
# and fails if any target crashes, leaks, times out or runs out of memory.
#
#   fuzz/smoke.sh                    # all targets, 20 s each
#   FUZZ_SECONDS=60 fuzz/smoke.sh    # longer
#   fuzz/smoke.sh framing            # some targets only
#
# Needs rustup with a nightly toolchain; installs cargo-fuzz when it is missing. A crashing input
# is kept in fuzz/artifacts/<target>/ (ignored by git); see fuzz/README.md to reproduce it.
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
ALL_TARGETS=(cpio_decode framing guest_protocol meta_parse squashfs_read diagnostics_asm)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

say() { printf '\033[1m==> fuzz smoke: %s\033[0m\n' "$*" >&2; }

case $FUZZ_SECONDS in
  '' | *[!0-9]* | 0) echo "FUZZ_SECONDS must be a positive integer, not '$FUZZ_SECONDS'" >&2; exit 2 ;;
esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  say "no nightly toolchain: rustup toolchain install nightly --profile minimal"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  say "cargo-fuzz is missing: cargo +nightly install cargo-fuzz --locked"
  cargo +nightly install cargo-fuzz --locked
fi

cd "$FUZZ_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pe-fuzz-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

say "building ${TARGETS[*]} ($(cargo +nightly fuzz --version), $(rustc +nightly --version))"
for target in "${TARGETS[@]}"; do
  cargo +nightly fuzz build "$target"
done

failed=()
for target in "${TARGETS[@]}"; do
  seeds=("corpus/$target"/seed-*)
  if [ ! -e "${seeds[0]}" ]; then
    echo "no seeds in fuzz/corpus/$target" >&2
    failed+=("$target")
    continue
  fi
  mkdir -p "$WORK/corpus/$target"
  cp "${seeds[@]}" "$WORK/corpus/$target/"
  say "$target: ${FUZZ_SECONDS}s from ${#seeds[@]} seeds (temporary corpus $WORK/corpus/$target)"
  log="$WORK/$target.log"
  # -timeout: one input taking over 10 s counts as a failure (a hang), not just a slow run.
  if cargo +nightly fuzz run "$target" "$WORK/corpus/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$log" | tail -n 1 | sed "s/^/    $target: /" >&2 || true
  else
    status=$?
    echo "    $target FAILED (exit $status); last lines of its log:" >&2
    tail -n 60 "$log" >&2
    failed+=("$target")
  fi
done

elapsed=$((SECONDS - start))
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]} (${elapsed}s); crashing inputs are in fuzz/artifacts/<target>/"
  exit 1
fi
say "ok: ${TARGETS[*]} ran clean for ${FUZZ_SECONDS}s each (${elapsed}s in all)"
