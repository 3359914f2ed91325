#!/usr/bin/env bash
# Checks for (and, when missing, installs) what building and testing fnvm needs: a Rust toolchain
# of at least the workspace's rust-version, with clippy and rustfmt. Safe to run again: it only
# installs what is missing.
set -euo pipefail

cd "$(dirname "$0")/.."

required=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: no Rust toolchain found; installing Rust $required with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --default-toolchain "$required" --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# rustc prints "rustc 1.95.0 (...)"; compare major.minor against rust-version.
have=$(rustc --version | cut -d' ' -f2)
version_number() { echo "$1" | awk -F. '{ printf "%d%03d\n", $1, $2 }'; }
if [ "$(version_number "$have")" -lt "$(version_number "$required")" ]; then
    if command -v rustup >/dev/null 2>&1; then
        echo "setup: rustc $have is older than $required; installing $required"
        rustup toolchain install "$required" --profile minimal --component clippy,rustfmt
        rustup override set "$required"
    else
        echo "setup: rustc $have is older than the required $required, and rustup is missing" >&2
        exit 1
    fi
fi

# With rustup, `cargo-clippy` and `rustfmt` exist as proxies even when the component is missing,
# so ask the tools themselves.
for component in clippy rustfmt; do
    if [ "$component" = clippy ]; then check=(cargo clippy --version); else check=(rustfmt --version); fi
    if ! "${check[@]}" >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            echo "setup: adding $component"
            rustup component add "$component"
        else
            echo "setup: $component is missing and rustup is not available to add it" >&2
            exit 1
        fi
    fi
done

# The Pulsar client (the `pulsar` crate) and tests/pulsar-test-broker generate their protobuf code
# at build time with prost-build, which runs `protoc`: Debian's protobuf-compiler provides it.
if ! command -v protoc >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing protobuf-compiler (protoc)"
        sudo_cmd=()
        if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
        "${sudo_cmd[@]}" apt-get update -qq
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends protobuf-compiler >/dev/null
    else
        echo "setup: protoc is missing and apt-get is not available to install it" >&2
        exit 1
    fi
fi

spec_dir="${FNVM_SPEC_DIR:-../shared/wasm-spec-testsuite}"
if [ ! -d "$spec_dir" ]; then
    echo "setup: note: spec scripts not found at $spec_dir (set FNVM_SPEC_DIR); the spec tests need them"
fi

echo "setup: ok ($(rustc --version), $(cargo --version))"
