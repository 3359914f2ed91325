#!/usr/bin/env bash
# The main job on a fresh machine: set up what is missing, build fnvm in release mode, and run
# the WebAssembly 2.0 specification scripts (all but SIMD) through the compiler and runtime.
# Until `fnvm serve` exists this is the engine's entry point. Extra arguments go to `fnvm wast`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
spec_dir="${FNVM_SPEC_DIR:-../shared/wasm-spec-testsuite}"
exec cargo run --release --quiet -- wast --exclude simd_ "$@" "$spec_dir"/*.wast
