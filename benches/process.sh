#!/usr/bin/env bash
# Whole-process comparison: `fnvm run GUEST` against `wasmtime run GUEST` (wasmtime CLI 48.0.8),
# each with its compiled-code cache warm, timed together by hyperfine (interleaved warm-up,
# then each command's runs). Also the precompiled forms: `fnvm run GUEST.fnvm` (an fnvm
# artifact) and `wasmtime run --allow-precompiled GUEST.cwasm`.
#
# Usage: benches/process.sh [--runs N] [GUEST...]
#   GUEST: hello (the wat hello world, 12 bytes to stdout), hello-data (the same with 1 MiB of
#   data segments), hello-rust, hello-go (from build-guests.sh). Default: all four.
#
# Needs: target/release/fnvm (`cargo build --release` in the repository root), the wasmtime
# CLI in target/tools/bin (installed here if missing: `cargo install wasmtime-cli --version
# 48.0.8 --locked --root target/tools`, about 15 minutes on 2 cores), hyperfine (Debian
# package, installed if missing), and the guests (`benches/build-guests.sh`).
# Markdown tables go to target/compare/process/*.md; the summary is printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$root/target/compare/process"
fnvm="${FNVM:-$root/target/release/fnvm}"
wasmtime="${WASMTIME:-$root/target/tools/bin/wasmtime}"
runs=200

log() { printf 'process: %s\n' "$*" >&2; }

guests=()
while (($#)); do
    case "$1" in
    --runs)
        runs="$2"
        shift 2
        ;;
    -h | --help)
        sed -n '2,17p' "$0"
        exit 0
        ;;
    *)
        guests+=("$1")
        shift
        ;;
    esac
done
((${#guests[@]})) || guests=(hello hello-data hello-rust hello-go)

if ! command -v hyperfine >/dev/null; then
    log "apt-get install hyperfine"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine
fi
if [[ ! -x $wasmtime ]]; then
    log "installing wasmtime-cli 48.0.8 into $root/target/tools (takes a while)"
    nice -n 10 cargo install wasmtime-cli --version 48.0.8 --locked --root "$root/target/tools"
fi
if [[ ! -x $fnvm ]]; then
    log "building fnvm (release)"
    (cd "$root" && nice -n 10 cargo build --release --bin fnvm)
fi

# The generated guests (wat hello, 1 MiB data) as .wasm files, and the built ones.
mkdir -p "$out/guests"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/compare}" \
    cargo run --quiet --release --manifest-path "$here/compare/Cargo.toml" --bin report -- \
    --emit-guests "$out/guests"
for g in hello-rust hello-go; do
    if [[ -f $here/compare/guests/out/$g.wasm ]]; then
        cp "$here/compare/guests/out/$g.wasm" "$out/guests/$g.wasm"
    fi
done

# Both caches live under target/compare/process so that a run never touches the user's
# (fnvm: $XDG_CACHE_HOME/fnvm; wasmtime: the directory in its cache config file).
export XDG_CACHE_HOME="$out/cache"
mkdir -p "$XDG_CACHE_HOME"
wt_cache_cfg="$out/wasmtime-cache.toml"
printf '[cache]\ndirectory = "%s"\n' "$XDG_CACHE_HOME/wasmtime" >"$wt_cache_cfg"

"$fnvm" --version 2>/dev/null || true
"$wasmtime" --version

summary="$out/summary.md"
: >"$summary"
for g in "${guests[@]}"; do
    wasm="$out/guests/$g.wasm"
    if [[ ! -f $wasm ]]; then
        log "skipping $g: $wasm missing (run benches/build-guests.sh)"
        continue
    fi
    # Precompiled forms, and a check that each command prints exactly "Hello World\n".
    "$fnvm" compile "$wasm" -o "$out/guests/$g.fnvm"
    "$wasmtime" compile -C cache=n "$wasm" -o "$out/guests/$g.cwasm"
    cmds=(
        "$fnvm run $wasm"
        "$wasmtime run -C cache=y -C cache-config=$wt_cache_cfg $wasm"
        "$fnvm run $out/guests/$g.fnvm"
        "$wasmtime run --allow-precompiled $out/guests/$g.cwasm"
    )
    names=("fnvm run $g.wasm" "wasmtime run $g.wasm" "fnvm run $g.fnvm" "wasmtime run $g.cwasm")
    for c in "${cmds[@]}"; do
        # shellcheck disable=SC2086 # the commands are word-split on purpose
        got="$($c </dev/null)"
        if [[ $got != "Hello World" ]] || [[ $($c </dev/null | wc -c) != 12 ]]; then
            log "wrong output from: $c: ${got@Q}"
            exit 1
        fi
    done
    args=()
    for i in "${!cmds[@]}"; do
        args+=(--command-name "${names[$i]}" "${cmds[$i]}")
    done
    log "hyperfine $g ($runs runs each)"
    hyperfine -N --warmup 20 --runs "$runs" --output pipe \
        --export-markdown "$out/$g.md" "${args[@]}" </dev/null
    {
        echo "### $g.wasm ($(stat -c %s "$wasm") bytes)"
        echo
        cat "$out/$g.md"
        echo
    } >>"$summary"
done
echo
cat "$summary"
