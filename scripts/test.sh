#!/usr/bin/env bash
# The tests on a fresh machine: set up what is missing, build the WASI guest programs (installing
# their toolchains when missing), then run every test of the workspace (unit tests, the engine
# tests, one test per specification script, the WASI guests under `fnvm run`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
scripts/guests.sh
exec cargo test --workspace "$@"
