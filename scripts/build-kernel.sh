#!/usr/bin/env bash
# Build the Program Explorer guest kernel (uncompressed vmlinux, booted by QEMU through PVH).
#
#   scripts/build-kernel.sh            # build if needed; the last stdout line is the vmlinux path
#
# Source: Debian's linux-source-6.12 package (/usr/src/linux-source-6.12.tar.xz).
# Config: `make tinyconfig` + guest/kernel/pe.config + `make olddefconfig`.
# Output: ${PE_CACHE_DIR:-$HOME/.cache/program-explorer}/kernel/<key>/{vmlinux,config}
#         key = first 16 hex of sha256(fragment settings + tarball name + package version +
#         recipe); comment-only edits of the fragment keep the key.
# Idempotent: a cached kernel is reported in milliseconds. The build happens in a temporary
# directory that is renamed into place at the end, so an interrupted build leaves nothing
# half-written.
#
# Environment:
#   PE_CACHE_DIR        cache root (default $HOME/.cache/program-explorer)
#   PE_KERNEL_SOURCE    source tarball (default /usr/src/linux-source-6.12.tar.xz)
#   PE_KERNEL_JOBS      make -j value (default $(nproc))
set -euo pipefail

# Bump when the build steps change in a way that changes the output.
RECIPE=1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
fragment="$repo/guest/kernel/pe.config"
src_tar="${PE_KERNEL_SOURCE:-/usr/src/linux-source-6.12.tar.xz}"
cache_root="${PE_CACHE_DIR:-${HOME:-/root}/.cache/program-explorer}"
kernel_cache="$cache_root/kernel"

log() { echo "kernel: $*"; }
die() { echo "kernel: error: $*" >&2; exit 1; }

[[ -f "$fragment" ]] || die "config fragment not found: $fragment"
[[ -f "$src_tar" ]] || die "kernel source not found: $src_tar (apt-get install linux-source-6.12)"

# Version of the source: the Debian package version when the tarball comes from it,
# otherwise the tarball's size and modification time.
src_name="$(basename "$src_tar")"
pkg="${src_name%.tar.*}"
src_version=""
if [[ "$src_tar" == /usr/src/* ]] && command -v dpkg-query >/dev/null 2>&1; then
    src_version="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
fi
if [[ -z "$src_version" ]]; then
    src_version="$(stat -c '%s-%Y' "$src_tar")"
fi

# Comments and blank lines do not change the kernel, so they do not change the key
# (`# CONFIG_X is not set` lines do).
key="$( { grep -E '^(CONFIG_|# CONFIG_[A-Za-z0-9_]+ is not set)' "$fragment" || true; printf '\n%s\n%s\nrecipe=%s\n' "$src_name" "$src_version" "$RECIPE"; } \
        | sha256sum | cut -c1-16)"
out_dir="$kernel_cache/$key"
vmlinux="$out_dir/vmlinux"

if [[ -f "$vmlinux" ]]; then
    log "cached at $vmlinux"
    echo "$vmlinux"
    exit 0
fi

# --- Build ---------------------------------------------------------------------------------
for tool in make gcc ld flex bison bc perl tar xz; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "missing build tool '$tool' (apt-get install build-essential flex bison bc libelf-dev libssl-dev xz-utils)"
done
[[ -f /usr/include/libelf.h || -f /usr/include/gelf.h ]] \
    || die "missing libelf headers (apt-get install libelf-dev)"

mkdir -p "$kernel_cache"

# One build per key at a time; a second caller waits and then finds the cached kernel.
exec 9>"$kernel_cache/$key.lock"
if ! flock -n 9; then
    log "another build of $key is running, waiting for it"
    flock 9
fi
if [[ -f "$vmlinux" ]]; then
    log "cached at $vmlinux"
    echo "$vmlinux"
    exit 0
fi

jobs="${PE_KERNEL_JOBS:-$(nproc)}"
build_log="$kernel_cache/$key.build.log"
tmp="$(mktemp -d "$kernel_cache/.tmp-$key-XXXXXX")"
# Long steps run in their own process group (setsid) in the background, so that a signal
# to this script stops them at once (bash would otherwise wait for the foreground command).
child=""
run() {
    setsid "$@" </dev/null >>"$build_log" 2>&1 &
    child=$!
    local rc=0
    wait "$child" || rc=$?
    child=""
    return "$rc"
}
on_signal() {
    if [[ -n "$child" ]]; then
        kill -TERM -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
        sleep 0.2
    fi
    echo "kernel: interrupted, nothing installed" >&2
    exit 130
}
cleanup() { rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp" 2>/dev/null; } || true; }
trap cleanup EXIT
trap on_signal INT TERM HUP
: >"$build_log"

fail() {
    echo "kernel: error: $1 (log: $build_log); last lines:" >&2
    tail -n 40 "$build_log" >&2 || true
    exit 1
}

kmake() {
    run make -C "$tmp/src" ARCH=x86_64 \
        KBUILD_BUILD_USER=program-explorer KBUILD_BUILD_HOST=program-explorer \
        KBUILD_BUILD_TIMESTAMP="@0" "$@"
}

start=$SECONDS
log "building $key from $src_name ($src_version)"
log "unpacking source"
mkdir "$tmp/src"
run tar -xf "$src_tar" -C "$tmp/src" --strip-components=1 || fail "unpacking $src_tar failed"

log "configuring"
kmake tinyconfig || fail "make tinyconfig failed"
run bash -c 'cd "$1" && ./scripts/kconfig/merge_config.sh -m .config "$2"' _ "$tmp/src" "$fragment" \
    || fail "merging $fragment failed"
kmake olddefconfig || fail "make olddefconfig failed"

# Every setting of the fragment must survive olddefconfig (an unmet dependency silently
# drops it): `CONFIG_X=v` must be in .config verbatim, `# CONFIG_X is not set` must not be =y/=m.
missing=()
while IFS= read -r line; do
    if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
        grep -qxF -- "$line" "$tmp/src/.config" || missing+=("$line (got: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$tmp/src/.config" || echo unset))")
    elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
        if grep -qE "^${BASH_REMATCH[1]}=[ym]$" "$tmp/src/.config"; then
            missing+=("$line (got: $(grep -E "^${BASH_REMATCH[1]}=" "$tmp/src/.config"))")
        fi
    fi
done <"$fragment"
if ((${#missing[@]})); then
    echo "kernel: error: these fragment settings did not survive 'make olddefconfig':" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
fi

log "compiling (a few minutes)..."
kmake -j"$jobs" vmlinux || fail "make vmlinux failed"

mkdir "$tmp/out"
cp "$tmp/src/vmlinux" "$tmp/out/vmlinux"
cp "$tmp/src/.config" "$tmp/out/config"
sync "$tmp/out/vmlinux" "$tmp/out/config" 2>/dev/null || true
rm -rf "$out_dir"   # only a leftover without vmlinux can be here (checked above, under the lock)
mv -T "$tmp/out" "$out_dir"

log "built in $((SECONDS - start)) s, $(stat -c %s "$vmlinux") bytes"
echo "$vmlinux"
