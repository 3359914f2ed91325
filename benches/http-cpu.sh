#!/usr/bin/env bash
# Where a server's time goes per HTTP request: for every thread of the process, user and system
# CPU time (µs per request, from /proc/PID/task/*/stat) and context switches per request
# (voluntary: it waited; involuntary: the scheduler took the CPU), over one wrk run. On these
# machines a context switch costs about 10 µs (PVM), so switches per request say as much as
# CPU time does.
#
# Usage: benches/http-cpu.sh [--connections C] [--duration SECS] [--fnvm PATH] [-- SERVE_ARGS...]
#        benches/http-cpu.sh --pid PID --url URL [--connections C] [--duration SECS]
#
# Without --pid it starts `fnvm serve` (default target/release/fnvm, built if missing) on a
# fresh data directory with SERVE_ARGS, deploys the hello world of benches/http.sh and loads
# it. With --pid and --url it
# measures a server that is already running (e.g. benches/compare's hyper_hello).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
connections=16
duration=8
fnvm="$root/target/release/fnvm"
pid=""
url=""
serve_args=()
while (($#)); do
    case $1 in
    --connections) connections=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --fnvm) fnvm=$2; shift 2 ;;
    --pid) pid=$2; shift 2 ;;
    --url) url=$2; shift 2 ;;
    --) shift; serve_args=("$@"); break ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "http-cpu: unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v wrk >/dev/null || { echo "http-cpu: wrk is missing (apt-get install wrk)" >&2; exit 1; }

if [[ -z $pid ]]; then
    [[ -x $fnvm ]] || (cd "$root" && cargo build --release --bin fnvm)
    data=$(mktemp -d)
    free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    api_port=$(free_port)
    http_port=$(free_port)
    "$fnvm" serve --data-dir "$data" --api-listen "127.0.0.1:$api_port" \
        --http-listen "127.0.0.1:$http_port" "${serve_args[@]}" >"$data.log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log" "$data.log.deploy" "$data.wasm"' EXIT
    for _ in $(seq 300); do
        curl -sf -o /dev/null "http://127.0.0.1:$api_port/healthz" && break
        sleep 0.2
    done
    token=$("$fnvm" admin token create --org bench --data-dir "$data" | awk '{w = $NF} END {print w}')
    api=(--org bench --api "http://127.0.0.1:$api_port" --token "$token")
    fid=$("$fnvm" functions create --name hello --max-instances 64 "${api[@]}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    # The wat hello world of benches/http.sh (`report --emit-guests`), 175 bytes.
    base64 -d >"$data.wasm" <<'WASM'
AGFzbQEAAAABDAJgBH9/f38Bf2AAAAIjARZ3YXNpX3NuYXBzaG90X3ByZXZpZXcxCGZkX3dyaXRlAAADAgEBBQMBAAEHEwIGbWVtb3J5AgAGX3N0YXJ0AAEKLAEqAEEAQRA2AgBBBEEMNgIAQQFBAEEBQQgQAARAAAtBCCgCAEEMRwRAAAsLCxIBAEEQCwxIZWxsbyBXb3JsZAoAEgRuYW1lAQsBAAhmZF93cml0ZQ==
WASM
    "$fnvm" functions deploy "$data.wasm" "$fid" "${api[@]}" >/dev/null 2>"$data.log.deploy" ||
        { cat "$data.log.deploy" >&2; exit 1; }
    url="http://127.0.0.1:$http_port/$fid"
fi
[[ -n $url ]] || { echo "http-cpu: --url is required with --pid" >&2; exit 2; }
[[ $(curl -s "$url") == "Hello World" ]] || echo "http-cpu: warning: $url does not answer Hello World" >&2

threads=$((connections > 1 ? 2 : 1))
wrk -t$threads -c"$connections" -d2s "$url" >/dev/null # warm-up
snap() {
    for t in /proc/"$pid"/task/*; do
        printf '%s %s %s %s\n' "$(basename "$t")" "$(tr ' ' '_' <"$t/comm")" \
            "$(awk '/^voluntary_ctxt/ {v = $2} /nonvoluntary_ctxt/ {n = $2} END {print v, n}' "$t/status")" \
            "$(awk '{print $14, $15}' "$t/stat")"
    done | sort
}
before=$(snap)
out=$(wrk -t$threads -c"$connections" -d"${duration}s" "$url")
after=$(snap)
requests=$(awk '/requests in/ {print $1}' <<<"$out")
hz=$(getconf CLK_TCK)
echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s at $connections connections, $requests requests"
join <(echo "$before") <(echo "$after") | awk -v n="$requests" -v hz="$hz" '
    BEGIN { printf "%-18s %10s %10s %10s %10s\n", "thread", "user µs", "sys µs", "vol sw", "invol sw" }
    {
        u = ($10 - $5) * 1e6 / hz / n; s = ($11 - $6) * 1e6 / hz / n
        v = ($8 - $3) / n; i = ($9 - $4) / n
        if (u + s + v + i < 0.001) next
        printf "%-18s %10.2f %10.2f %10.3f %10.3f\n", $2, u, s, v, i
        tu += u; ts += s; tv += v; ti += i
    }
    END { printf "%-18s %10.2f %10.2f %10.3f %10.3f   (per request)\n", "all threads", tu, ts, tv, ti }'
