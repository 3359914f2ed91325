#!/usr/bin/env bash
# The main job on a fresh machine: set up what is missing, build fnvm in release mode, and start
# the platform with its embedded defaults: `fnvm serve`, metadata in SQLite and artifacts in a
# local directory under ./fnvm-data, the API on 127.0.0.1:8080, the toolchains of server-side
# builds installed under target/toolchains. Extra arguments go to
# `fnvm serve` (see `fnvm serve --help`). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
cargo build --release --quiet --bin fnvm
# The toolchains of server-side builds (sources uploaded as .rs, .go, .ts, .js).
scripts/toolchains.sh >/dev/null
scripts/js-engine.sh >/dev/null
export FNVM_TOOLCHAINS_DIR="${FNVM_TOOLCHAINS_DIR:-$PWD/target/toolchains}"
exec target/release/fnvm serve "$@"
