#!/usr/bin/env bash
# Builds fnvm's JavaScript engine (js-engine/: QuickJS through rquickjs, a WASI command with the
# `fnvm_preinit` export) into target/js-engine/fnvm-js-engine.wasm (or OUT), and copies it to
# target/toolchains/javascript/engine.wasm, where the builds crate looks for it.
# Usage: scripts/js-engine.sh [OUT]
# Installs what is missing of the C toolchain for wasm32 (clang, lld, wasi-libc, compiler-rt's
# wasm32 builtins: Debian packages) and the wasm32-wasip1 Rust target. Idempotent and fast when
# up to date (the output is newer than every source); every failure is fatal.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
src=$root/js-engine
default_out=$root/target/js-engine/fnvm-js-engine.wasm
out=${1:-$default_out}
case $out in /*) ;; *) out=$PWD/$out ;; esac
toolchain_copy=$root/target/toolchains/javascript/engine.wasm

if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi

say() { echo "js-engine: $*"; }
fail() {
    echo "js-engine: error: $*" >&2
    exit 1
}

mkdir -p "$root/target/js-engine" "$(dirname "$out")" "$(dirname "$toolchain_copy")"
# One build at a time (test binaries may start this at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$root/target/js-engine/.lock"
    flock 9
fi

publish() {
    if [ "$out" != "$default_out" ] && ! [ "$out" -nt "$default_out" -a -f "$out" ]; then
        cp "$default_out" "$out.tmp" && mv "$out.tmp" "$out"
    fi
    if ! [ -f "$toolchain_copy" ] || [ "$default_out" -nt "$toolchain_copy" ]; then
        cp "$default_out" "$toolchain_copy.tmp" && mv "$toolchain_copy.tmp" "$toolchain_copy"
    fi
}

if [ -f "$default_out" ] && [ -z "$(find "$src/Cargo.toml" "$src/Cargo.lock" "$src/.cargo" \
    "$src/src" "$root/scripts/js-engine.sh" -type f -newer "$default_out" -print -quit \
    2>/dev/null)" ]; then
    publish
    say "up to date: $out"
    exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
apt_updated=false
apt_install() {
    command -v apt-get >/dev/null 2>&1 || fail "apt-get not found; install $* by hand"
    say "installing $* (apt-get)"
    if ! $apt_updated; then
        "${sudo_cmd[@]}" apt-get update -qq
        apt_updated=true
    fi
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# c_works: clang links a C program for wasm32-wasi (headers, libc, builtins, linker).
c_works() {
    local probe=$root/target/js-engine/probe
    mkdir -p "$probe"
    printf '#include <stdio.h>\nint main(void){printf("%%g\\n", 1.5 * 2);return 0;}\n' >"$probe/p.c"
    clang --target=wasm32-wasi -O2 -o "$probe/p.wasm" "$probe/p.c" >/dev/null 2>&1
}

if ! command -v clang >/dev/null 2>&1 || ! command -v llvm-ar >/dev/null 2>&1 || ! c_works; then
    apt_install clang lld llvm wasi-libc
    major=$(clang -dumpversion | cut -d. -f1)
    c_works || apt_install "libclang-rt-$major-dev-wasm32"
    c_works || fail "clang cannot build for wasm32-wasi even after installing its packages"
fi
command -v cargo >/dev/null 2>&1 || fail "cargo not found (install Rust with rustup)"
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip1; then
    say "adding the wasm32-wasip1 Rust target"
    rustup target add wasm32-wasip1
fi

say "building (cargo build --release --target wasm32-wasip1 in js-engine/)"
# js-engine/.cargo/config.toml sets the C compiler variables; they are repeated here so that a
# CARGO_* override in the environment cannot drop them.
(
    cd "$src"
    export RQUICKJS_SYS_NO_WASI_SDK=1 CC_wasm32_wasip1=clang AR_wasm32_wasip1=llvm-ar \
        CFLAGS_wasm32_wasip1="--target=wasm32-wasi -O2"
    export CARGO_TARGET_DIR=$root/target/js-engine/cargo
    cargo build --release --target wasm32-wasip1 --locked
)
built=$root/target/js-engine/cargo/wasm32-wasip1/release/fnvm-js-engine.wasm
[ -f "$built" ] || fail "cargo produced no $built"
cp "$built" "$default_out.tmp" && mv "$default_out.tmp" "$default_out"
publish
say "built $default_out ($(stat -c %s "$default_out") bytes)"
