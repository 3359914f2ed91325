#!/usr/bin/env bash
# The tests on a fresh machine: set up what is missing, build the WASI guest programs (installing
# their toolchains when missing), start the services the platform's tests talk to (PostgreSQL,
# an S3-compatible server), then run every test of the workspace (unit tests, the engine tests,
# one test per specification script, the WASI guests under `fnvm run`, the control plane on
# SQLite and PostgreSQL, local and S3, server-side builds in their sandbox, `fnvm serve` end to
# end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
scripts/guests.sh
# The toolchains of server-side builds (Rust, Go, AssemblyScript in bubblewrap; the QuickJS
# engine of JavaScript functions), into target/toolchains, where the tests build with them.
scripts/toolchains.sh >/dev/null
scripts/js-engine.sh >/dev/null
# The C guest SDK's host test (sanitizers, malformed and mutated input); the Rust SDK's tests are
# part of the workspace below.
guest-sdk/c/test.sh >/dev/null
# PostgreSQL and the S3-compatible server: started here so that a failure to install or start
# them shows up front (the tests would start them on first use too).
scripts/services.sh >/dev/null
exec cargo test --workspace "$@"
