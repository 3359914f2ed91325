#!/usr/bin/env bash
# HTTP benchmark: a WASI hello world served over HTTP/1.1 by three servers, loaded with wrk.
#
#   (a) hyper   bare hyper 1.x answering "Hello World\n" with no WebAssembly: the ceiling
#               (benches/compare/src/bin/hyper_hello.rs)
#   (b) fnvm    `fnvm serve`, the function deployed through the API, `ANY /{function_id}`
#   (c) wagi    hyper + wasmtime 48 running the module once per request the way Spin's WAGI
#               executor does (benches/compare/src/bin/wasmtime_wagi.rs)
#
# Usage: benches/http.sh [--rounds N] [--duration SECS] [--connections LIST] [--servers LIST]
#                        [--warmup SECS] [--guest FILE.wasm] [--wagi-tuned]
#        benches/http.sh --soak [--duration SECS] [--connections C] [--functions N]
#                        [--servers LIST]
#
#   --rounds N          rounds per concurrency (default 3); within a concurrency the servers
#                       alternate a b c a b c ...
#   --duration SECS     length of one wrk run (default 10; soak: 60)
#   --connections LIST  comma-separated concurrencies (default 1,16,64; soak: 64)
#   --servers LIST      comma-separated subset of a,b,c (or hyper,fnvm,wagi); default a,b,c
#                       (soak: b)
#   --warmup SECS       one unrecorded wrk run per server at the largest concurrency before
#                       the measured ones (default 2; 0: none)
#   --guest FILE        the module for (b) and (c) (default: benches/compare's wat hello world,
#                       written by `report --emit-guests`); it must print "Hello World\n"
#   --wagi-tuned        run (c) with the "wasmtime pooling tuned" allocator settings
#   --soak              60 s at 64 connections over N functions (default 10, the same module
#                       deployed N times; wrk's Lua script takes their paths round-robin):
#                       errors (non-2xx, socket errors) and the server's RSS every second
#                       (VmRSS of the server process: first, max, last); exits 1 on any error
#
# Every server is checked before it is loaded (and before each of its runs): GET must answer
# 200 with exactly "Hello World\n", or the script stops with what it got instead.
# wrk: `wrk -t2 -cC -dDs --latency` (-t1 for C=1). The servers are started once and kept
# running across rounds and concurrencies (see benches/README.md, "HTTP").
#
# FNVM_SERVE_ARGS="..." adds arguments to `fnvm serve` for (b) (e.g. `--slot-reset background`,
# `--inline-short-jobs false`), word-split.
#
# Builds what it needs: the compare binaries (CARGO_TARGET_DIR, default target/compare) and,
# for (b), `cargo build --release --bin fnvm` in the repository root (skipped if FNVM=PATH names
# a binary to use). Installs wrk and curl from Debian if missing. Results go to
# target/compare/http/ (summary.md, results.tsv, raw/ with every wrk output, logs/); the markdown
# table is printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
compare_target="${CARGO_TARGET_DIR:-$root/target/compare}"
bin="$compare_target/release"
out="$compare_target/http"

rounds=3
duration=""
connections=""
servers=""
warmup=2
guest=""
wagi_tuned=0
soak=0
functions=10

log() { printf 'http: %s\n' "$*" >&2; }
die() {
    printf 'http: error: %s\n' "$*" >&2
    exit 1
}

while (($#)); do
    case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --guest) guest="$2"; shift 2 ;;
    --wagi-tuned) wagi_tuned=1; shift ;;
    --soak) soak=1; shift ;;
    --functions) functions="$2"; shift 2 ;;
    -h | --help)
        sed -n '2,40p' "$0"
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
if ((soak)); then
    duration="${duration:-60}"
    connections="${connections:-64}"
    servers="${servers:-b}"
else
    duration="${duration:-10}"
    connections="${connections:-1,16,64}"
    servers="${servers:-a,b,c}"
fi
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive integer"
[[ $duration =~ ^[1-9][0-9]*$ ]] || die "--duration: a positive number of seconds"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup: a number of seconds"
[[ $functions =~ ^[1-9][0-9]*$ ]] || die "--functions: a positive integer"
IFS=, read -r -a conns <<<"$connections"
for c in "${conns[@]}"; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "--connections: $c is not a positive integer"; done
selected=()
IFS=, read -r -a wanted <<<"$servers"
for s in "${wanted[@]}"; do
    case "$s" in
    a | hyper) selected+=(a) ;;
    b | fnvm) selected+=(b) ;;
    c | wagi | wasmtime) selected+=(c) ;;
    *) die "--servers: unknown server $s (a/hyper, b/fnvm, c/wagi)" ;;
    esac
done
# Keep the a b c order whatever the order given, without duplicates.
order=()
for s in a b c; do [[ " ${selected[*]} " == *" $s "* ]] && order+=("$s"); done
((${#order[@]})) || die "no server selected"
has() { [[ " ${order[*]} " == *" $1 "* ]]; }

declare -A label=([a]="(a) bare hyper" [b]="(b) fnvm" [c]="(c) wasmtime WAGI")

# ---------------------------------------------------------------------------------------------
# Tools and builds.

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "building hyper_hello, wasmtime_wagi and report (benches/compare, CARGO_TARGET_DIR=$compare_target)"
CARGO_TARGET_DIR="$compare_target" nice -n 10 cargo build --quiet --release \
    --manifest-path "$here/compare/Cargo.toml" --bins

fnvm=""
if has b; then
    if [[ -n ${FNVM:-} ]]; then
        fnvm="$FNVM"
        [[ -x $fnvm ]] || die "FNVM=$fnvm is not an executable"
        log "using FNVM=$fnvm (not built)"
    else
        log "building fnvm (cargo build --release --bin fnvm in $root)"
        (cd "$root" && env -u CARGO_TARGET_DIR nice -n 10 cargo build --quiet --release --bin fnvm)
        fnvm="$root/target/release/fnvm"
    fi
fi

mkdir -p "$out/raw" "$out/logs" "$out/guests"
rm -f "$out"/raw/*.txt "$out"/logs/*.log
if [[ -z $guest ]]; then
    "$bin/report" --emit-guests "$out/guests" >/dev/null
    guest="$out/guests/hello.wasm"
fi
[[ -f $guest ]] || die "guest $guest not found"
guest="$(cd "$(dirname "$guest")" && pwd)/$(basename "$guest")"
hello="$out/hello.expected"
printf 'Hello World\n' >"$hello"

# ---------------------------------------------------------------------------------------------
# Servers: started once, stopped on exit (only the processes started here, by pid).

declare -A pid=() url=()
declare -a paths=() # the soak's paths (function ids for b)
tmp_dirs=()
cleanup() {
    local p
    for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
    for p in "${tmp_dirs[@]}"; do rm -rf "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nothing listens on, from $1 up.
free_port() {
    local p=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
    echo "$p"
}
next_port=27180

# check NAME URL SECONDS: GET URL until it answers 200 with exactly "Hello World\n", for up to
# SECONDS; otherwise stop, saying what it answered.
check() {
    local name=$1 u=$2 secs=$3 deadline code body="$out/check.body" err="$out/check.err"
    deadline=$((SECONDS + secs))
    while :; do
        code=$(curl -sS -o "$body" -w '%{http_code}' --max-time 5 "$u" 2>"$err") || true
        if [[ $code == 200 ]] && cmp -s "$body" "$hello"; then
            return 0
        fi
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
    if [[ $code == 000 || -z $code ]]; then
        die "$name: GET $u got no HTTP answer: $(tr '\n' ' ' <"$err")(expected 200 \"Hello World\\n\")"
    fi
    local shown more=""
    shown=$(head -c 200 "$body" | cat -v | sed ':a;N;$!ba;s/\n/\\n/g')
    (($(stat -c %s "$body") > 200)) && more="..."
    die "$name: GET $u answered $code with \"$shown\"$more (expected 200 \"Hello World\\n\")"
}

alive() { kill -0 "${pid[$1]}" 2>/dev/null || die "${label[$1]} (pid ${pid[$1]}) exited; see $out/logs/"; }

start_a() {
    local port
    port=$(free_port $next_port)
    next_port=$((port + 1))
    "$bin/hyper_hello" --listen "127.0.0.1:$port" >"$out/logs/hyper_hello.log" 2>&1 &
    pid[a]=$!
    url[a]="http://127.0.0.1:$port/hello"
    check "${label[a]}" "${url[a]}" 15
}

start_c() {
    local port extra=()
    ((wagi_tuned)) && extra=(--tuned)
    port=$(free_port $next_port)
    next_port=$((port + 1))
    "$bin/wasmtime_wagi" --listen "127.0.0.1:$port" --module "$guest" "${extra[@]}" \
        >"$out/logs/wasmtime_wagi.log" 2>&1 &
    pid[c]=$!
    url[c]="http://127.0.0.1:$port/hello"
    check "${label[c]}" "${url[c]}" 15
    if ((soak)); then
        local i
        for ((i = 1; i <= functions; i++)); do paths+=("/hello-$i"); done
    fi
}

# (b): `fnvm serve` on a fresh data directory, a token, N functions each deployed with the
# guest (`fnvm functions deploy` follows the deployment to READY), then the worker's endpoint.
start_b() {
    local api_port http_port data token json fid i n=1
    ((soak)) && n=$functions
    api_port=$(free_port $next_port)
    http_port=$(free_port $((api_port + 1)))
    next_port=$((http_port + 1))
    data=$(mktemp -d "$out/fnvm-data.XXXXXX")
    tmp_dirs+=("$data")
    "$fnvm" serve --data-dir "$data" --api-listen "127.0.0.1:$api_port" \
        --http-listen "127.0.0.1:$http_port" ${FNVM_SERVE_ARGS:-} >"$out/logs/fnvm.log" 2>&1 &
    pid[b]=$!
    local deadline=$((SECONDS + 60))
    until curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$api_port/healthz"; do
        alive b
        ((SECONDS < deadline)) || die "fnvm serve: API http://127.0.0.1:$api_port/healthz did not answer in 60 s; see $out/logs/fnvm.log"
        sleep 0.2
    done
    token=$("$fnvm" admin token create --org bench --data-dir "$data" | awk '{w = $NF} END {print w}')
    [[ -n $token ]] || die "fnvm admin token create printed no token"
    local api=(--org bench --api "http://127.0.0.1:$api_port" --token "$token")
    for ((i = 1; i <= n; i++)); do
        # As many instances as the largest concurrency: (a) and (c) have no such limit, and
        # the default of one runs a Function's requests one at a time.
        json=$("$fnvm" functions create --name "bench-hello-$i" --max-instances 64 "${api[@]}") ||
            die "fnvm functions create failed"
        fid=$(printf '%s' "$json" | jq -r '.id // empty' 2>/dev/null ||
            printf '%s' "$json" | tr -d '\n' | sed -n 's/^[^{]*{[^{}]*"id" *: *"\([^"]*\)".*/\1/p')
        [[ -n $fid ]] || die "no \"id\" in the output of fnvm functions create: $json"
        log "fnvm: deploying $(basename "$guest") as function $fid ($i/$n)"
        "$fnvm" functions deploy "$guest" "$fid" "${api[@]}" >>"$out/logs/fnvm-deploy.log" 2>&1 ||
            die "fnvm functions deploy $fid failed; see $out/logs/fnvm-deploy.log and $out/logs/fnvm.log"
        paths+=("/$fid")
    done
    url[b]="http://127.0.0.1:$http_port${paths[0]}"
    check "${label[b]}" "${url[b]}" 10
    for ((i = 1; i < n; i++)); do check "${label[b]}" "http://127.0.0.1:$http_port${paths[$i]}" 10; done
}

# ---------------------------------------------------------------------------------------------
# wrk output parsing.

# Microseconds from wrk's time format (us, ms, s, m, h).
to_us() {
    awk -v t="$1" 'BEGIN {
        n = t + 0; u = t; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 1 : (u == "ms") ? 1e3 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : (u == "h") ? 3.6e9 : -1
        if (f < 0) { print "nan"; exit }
        printf "%.1f", n * f
    }'
}

# parse FILE: "rps p50_us p99_us requests non2xx socket_errors"
parse() {
    local f=$1 rps p50 p99 reqs non2xx sock
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(awk '$1 == "50%" {print $2}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f")
    reqs=$(awk '/ requests in / {print $1}' "$f")
    non2xx=$(awk -F: '/Non-2xx or 3xx responses/ {gsub(/ /, "", $2); print $2}' "$f")
    sock=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$f")
    [[ -n $rps && -n $p50 && -n $p99 ]] || die "could not parse wrk's output $f"
    echo "$rps $(to_us "$p50") $(to_us "$p99") ${reqs:-0} ${non2xx:-0} ${sock:-0}"
}

wrk_threads() { if (($1 < 2)); then echo 1; else echo 2; fi; }

fmt_rps() { awk -v x="$1" 'BEGIN { if (x >= 1e6) printf "%.2f M", x / 1e6; else if (x >= 1e3) printf "%.1f k", x / 1e3; else printf "%.0f", x }'; }
fmt_us() { awk -v x="$1" 'BEGIN { if (x >= 1e6) printf "%.2f s", x / 1e6; else if (x >= 1e3) printf "%.2f ms", x / 1e3; else printf "%.0f µs", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

machine() {
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r), $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}'); load average before the run: $load0."
    echo "fnvm commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'); guest: $(basename "$guest") ($(stat -c %s "$guest") bytes)."
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
awk -v l="${load0%% *}" 'BEGIN { exit !(l > 0.5) }' &&
    log "warning: load average is $load0 before starting: other work is running, numbers will be noisy"

# ---------------------------------------------------------------------------------------------
# Soak: one server at a time, N paths round-robin, errors and RSS.

if ((soak)); then
    c=${conns[0]}
    t=$(wrk_threads "$c")
    status=0
    summary="$out/soak.md"
    {
        echo "### Soak: ${duration} s at $c connections over $functions functions"
        echo
        machine
        echo
        echo "| server | requests | req/s | p50 | p99 | non-2xx | socket errors | RSS first | RSS max | RSS last |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    } >"$summary"
    for s in "${order[@]}"; do
        paths=()
        log "starting ${label[$s]}"
        "start_$s"
        base="${url[$s]%"${url[$s]#http://*/}"}"
        base="${base%/}"
        lua="$out/soak-$s.lua"
        {
            echo "-- Generated by benches/http.sh: the paths of the soak, taken round-robin."
            printf 'paths = {'
            printf ' "%s",' "${paths[@]}"
            echo ' }'
            cat <<'EOF'
non2xx = 0
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("offset", #threads - 1)
end
local i = nil
function request()
  if i == nil then i = (offset or 0) % #paths end
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + (t:get("non2xx") or 0) end
  io.write(string.format("Non-2xx (counted by the script): %d\n", n))
end
EOF
        } >"$lua"
        rss="$out/soak-$s.rss.tsv"
        : >"$rss"
        (
            start=$SECONDS
            while kill -0 "${pid[$s]}" 2>/dev/null; do
                kb=$(awk '/^VmRSS:/ {print $2}' "/proc/${pid[$s]}/status" 2>/dev/null) || break
                echo "$((SECONDS - start)) $kb" >>"$rss"
                sleep 1
            done
        ) &
        sampler=$!
        raw="$out/raw/soak-$s.txt"
        log "soak: ${label[$s]}, wrk -t$t -c$c -d${duration}s over ${#paths[@]} paths"
        wrk -t"$t" -c"$c" -d"${duration}s" --latency -s "$lua" "$base/" >"$raw" 2>&1 || true
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        alive "$s"
        vals=$(parse "$raw") || exit 1
        read -r rps p50 p99 reqs non2xx_wrk sock <<<"$vals"
        non2xx=$(awk -F': ' '/^Non-2xx \(counted by the script\)/ {print $2}' "$raw")
        non2xx=${non2xx:-$non2xx_wrk}
        read -r first max last < <(awk '{ if (NR == 1) f = $2; if ($2 > m) m = $2; l = $2 } END { printf "%.1f %.1f %.1f\n", f / 1024, m / 1024, l / 1024 }' "$rss")
        echo "| ${label[$s]} | $reqs | $(fmt_rps "$rps") | $(fmt_us "$p50") | $(fmt_us "$p99") | $non2xx | $sock | $first MiB | $max MiB | $last MiB |" >>"$summary"
        if ((non2xx + sock > 0)); then status=1; fi
        kill "${pid[$s]}" 2>/dev/null || true
        wait "${pid[$s]}" 2>/dev/null || true
        unset "pid[$s]"
    done
    {
        echo
        echo "RSS: VmRSS of the server process, sampled every second during the run (samples in $out/soak-*.rss.tsv); non-2xx counted by the wrk script for every response; socket errors: wrk's connect + read + write + timeout (2 s)."
    } >>"$summary"
    cat "$summary"
    exit "$status"
fi

# ---------------------------------------------------------------------------------------------
# Benchmark: start and check every server, warm each up, then per concurrency alternate the
# servers round by round.

for s in "${order[@]}"; do
    log "starting ${label[$s]}"
    "start_$s"
    log "${label[$s]}: ${url[$s]} answers 200 \"Hello World\\n\""
done

maxc=$(printf '%s\n' "${conns[@]}" | sort -n | tail -1)
if ((warmup > 0)); then
    for s in "${order[@]}"; do
        log "warm-up: ${label[$s]}, ${warmup} s at $maxc connections"
        wrk -t"$(wrk_threads "$maxc")" -c"$maxc" -d"${warmup}s" "${url[$s]}" >"$out/raw/warmup-$s.txt" 2>&1 || true
    done
fi

results="$out/results.tsv"
printf 'server\tconnections\tround\treq_per_s\tp50_us\tp99_us\trequests\tnon2xx\tsocket_errors\n' >"$results"
for c in "${conns[@]}"; do
    t=$(wrk_threads "$c")
    for ((r = 1; r <= rounds; r++)); do
        for s in "${order[@]}"; do
            alive "$s"
            check "${label[$s]}" "${url[$s]}" 5
            raw="$out/raw/c$c-r$r-$s.txt"
            wrk -t"$t" -c"$c" -d"${duration}s" --latency "${url[$s]}" >"$raw" 2>&1 ||
                die "wrk failed: $(cat "$raw")"
            vals=$(parse "$raw") || exit 1
            read -r rps p50 p99 reqs non2xx sock <<<"$vals"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$c" "$r" "$rps" "$p50" "$p99" "$reqs" "$non2xx" "$sock" >>"$results"
            log "c=$c round $r ${label[$s]}: $(fmt_rps "$rps") req/s, p50 $(fmt_us "$p50"), p99 $(fmt_us "$p99")$( ((non2xx + sock)) && echo ", ERRORS: $non2xx non-2xx/3xx, $sock socket")"
        done
    done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# Medians over rounds.
declare -A med_rps=() med_p50=() med_p99=() errs=()
for c in "${conns[@]}"; do
    for s in "${order[@]}"; do
        sel() { awk -F'\t' -v s="$s" -v c="$c" -v k="$1" 'NR > 1 && $1 == s && $2 == c {print $k}' "$results"; }
        med_rps[$s,$c]=$(sel 4 | median)
        med_p50[$s,$c]=$(sel 5 | median)
        med_p99[$s,$c]=$(sel 6 | median)
        errs[$s,$c]=$(awk -F'\t' -v s="$s" -v c="$c" 'NR > 1 && $1 == s && $2 == c {n += $8 + $9} END {print n + 0}' "$results")
    done
done

summary="$out/summary.md"
{
    echo "### HTTP hello world: median of $rounds rounds of $duration s per server and concurrency"
    echo
    machine
    echo "Load generator: wrk -t2 (-t1 at 1 connection) -cC -d${duration}s --latency, keep-alive, on the same machine; servers alternate a b c per round and stay up across rounds; warm-up ${warmup} s per server. Load average after: $load1."
    if has c; then
        if ((wagi_tuned)); then echo "(c): wasmtime pooling allocator, tuned settings (--wagi-tuned)."; else echo "(c): wasmtime pooling allocator, default settings."; fi
    fi
    echo
    echo "| connections | server | req/s | p50 | p99 | errors |"
    echo "|---:|---|---:|---:|---:|---:|"
    for c in "${conns[@]}"; do
        for s in "${order[@]}"; do
            echo "| $c | ${label[$s]} | $(fmt_rps "${med_rps[$s,$c]}") | $(fmt_us "${med_p50[$s,$c]}") | $(fmt_us "${med_p99[$s,$c]}") | ${errs[$s,$c]} |"
        done
    done
    echo
    echo "| connections | (b)/(a) req/s | (b)/(a) p99 | (b)/(c) req/s | (c)/(a) req/s | (c)/(a) p99 |"
    echo "|---:|---:|---:|---:|---:|---:|"
    for c in "${conns[@]}"; do
        echo "| $c | $(ratio "${med_rps[b,$c]:-}" "${med_rps[a,$c]:-}") | $(ratio "${med_p99[b,$c]:-}" "${med_p99[a,$c]:-}") | $(ratio "${med_rps[b,$c]:-}" "${med_rps[c,$c]:-}") | $(ratio "${med_rps[c,$c]:-}" "${med_rps[a,$c]:-}") | $(ratio "${med_p99[c,$c]:-}" "${med_p99[a,$c]:-}") |"
    done
    echo
    echo "errors: non-2xx/3xx responses and socket errors summed over the rounds (wrk's counts). Every round: $results; wrk's outputs: $out/raw/."
} >"$summary"
cat "$summary"
