#!/usr/bin/env bash
# Acceptance test of the Compiler Explorer API with an existing, unmodified client: cexpl 0.1.0
# (PyPI, "Command-line tool to interact with Compiler Explorer"), installed into a temporary
# virtualenv, run against `pe serve` with real microVMs. It lists languages and compilers,
# compiles and executes C with arguments and stdin, prints the assembly with its source lines,
# and makes a short link that opens in our app.
#   scripts/ce-client-test.sh        (needs target/debug/pe and the gcc image built)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PE_CE_PORT:-18095}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pe-ce-client.XXXXXX")
step() { printf '\033[1m==> ce client: %s\033[0m\n' "$*" >&2; }
fail() { echo "ce client FAILED: $*" >&2; exit 1; }
expect() { # expect NAME NEEDLE OUTPUT
  grep -qF -- "$2" <<<"$3" || { printf '%s\n' "$3" >&2; fail "$1: no \"$2\" in the output above"; }
}

server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step "pip install cexpl==0.1.0 into $WORK/venv"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check cexpl==0.1.0
cexpl=("$WORK/venv/bin/cexpl" -H "http://127.0.0.1:$PORT")

# The app (dist/, frontend/build.sh) when it is built: /l/{id} then serves it.
static_dir=
if [ -f "$ROOT/dist/index.html" ]; then static_dir=$ROOT/dist; fi
step "pe serve on 127.0.0.1:$PORT"
"$ROOT/target/debug/pe" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" \
  --rate-per-minute 0 ${static_dir:+--static-dir "$static_dir"} >"$WORK/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { tail -20 "$WORK/serve.log" >&2; fail "the server did not start"; }

cat >"$WORK/demo.c" <<'C'
#include <stdio.h>
int square(int x) { return x * x; }
int main(int argc, char **argv) {
    char line[64];
    if (fgets(line, sizeof line, stdin)) printf("stdin: %s\n", line);
    for (int i = 1; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    return square(argc);
}
C

step "languages and compilers"
out=$("${cexpl[@]}" --list-langs)
expect "--list-langs" "c - C" "$out"
expect "--list-langs" "python - Python" "$out"
out=$("${cexpl[@]}" --list-compilers c)
expect "--list-compilers c" "gcc - GCC (C)" "$out"

step "compile and execute with arguments and stdin"
out=$("${cexpl[@]}" -c gcc --cflags=-O1 -e -s "$WORK/demo.c" --stdin hello -a one "two words")
expect "execute" "stdin: hello" "$out"
expect "execute" "arg 1: one" "$out"
expect "execute" "arg 2: two words" "$out"

step "assembly with its source lines (--compare), and a short link"
out=$("${cexpl[@]}" -c gcc --cflags=-O1 -C -L "$WORK/demo.c")
expect "--compare" "2 int square(int x) { return x * x; }" "$out"
expect "--compare" "imul" "$out"
url=$(grep -o "http://127.0.0.1:$PORT/z/[A-Za-z0-9_-]*" <<<"$out" | head -1)
[ -n "$url" ] || { printf '%s\n' "$out" >&2; fail "no short link in the output"; }
id=${url##*/}
location=$(curl -s -o /dev/null -w '%{redirect_url}' "$url")
[ "$location" = "http://127.0.0.1:$PORT/l/$id" ] || fail "$url redirects to \"$location\", not /l/$id"
state=$(curl -sf "http://127.0.0.1:$PORT/api/v1/links/$id")
expect "the stored state" '"container":"gcc"' "$state"
expect "the stored state" 'int square(int x)' "$state"
if [ -n "$static_dir" ]; then
  curl -sf "http://127.0.0.1:$PORT/l/$id" | grep -qi '<html' || fail "/l/$id is not the app"
fi

step "ok: cexpl listed, compiled, executed, showed the assembly and made a link that opens"
