#!/usr/bin/env bash
# The tests on a fresh machine: set up what is missing, then run every test of the workspace
# (unit tests, the engine tests, one test per specification script).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
exec cargo test --workspace "$@"
