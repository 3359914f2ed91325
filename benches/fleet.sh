#!/usr/bin/env bash
# Fleet benchmark, on one machine (processes as the nodes) on PostgreSQL and an S3-compatible
# store, as a fleet runs (scripts/services.sh starts both, as for the tests):
#
#   (1) the router's cost: a hello function's requests/s and latency straight to the worker
#       holding it vs through `fnvm serve --role router` in front of it, with wrk, the two
#       alternating (direct router direct router ...) so that the machine's drift hits both;
#   (2) cold start from zero of a 2 MB module (the Go hello guest, 2.5 MB): the function is left
#       idle until the scheduler takes its replica away (--idle-to-zero-ms), the worker's local
#       artifact cache is emptied (so the artifact is fetched from the artifact store again),
#       then one request: its total time (curl) and what its Fnvm-Cold-Start header says
#       (load_ms: fetch + prepare; wait_ms: getting a share of the function's instances).
#
# Usage: benches/fleet.sh [--rounds N] [--duration SECS] [--connections LIST] [--colds N]
#   --rounds N          wrk rounds per concurrency and path (default 3)
#   --duration SECS     one wrk run (default 8)
#   --connections LIST  comma-separated concurrencies (default 16,64)
#   --colds N           cold starts measured (default 10)
#
# Builds `fnvm` (release) unless FNVM=PATH names a binary; the guests come from
# benches/compare/guests/out (benches/build-guests.sh) or target/guests (scripts/guests.sh).
# Installs wrk and curl from Debian if missing. Results: target/compare/fleet/summary.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${CARGO_TARGET_DIR:-$root/target/compare}/fleet"
rounds=3
duration=8
connections=16,64
colds=10

log() { printf 'fleet: %s\n' "$*" >&2; }
die() {
    printf 'fleet: error: %s\n' "$*" >&2
    exit 1
}

while (($#)); do
    case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --colds) colds="$2"; shift 2 ;;
    -h | --help)
        sed -n '2,23p' "$0"
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

for tool in wrk curl; do
    if ! command -v "$tool" >/dev/null; then
        log "installing $tool (apt-get)"
        sudo_cmd=()
        [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo -n)
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$tool" >/dev/null
    fi
done

if [[ -n ${FNVM:-} ]]; then
    fnvm="$FNVM"
else
    log "building fnvm (cargo build --release --bin fnvm)"
    (cd "$root" && env -u CARGO_TARGET_DIR nice -n 10 cargo build --quiet --release --bin fnvm)
    fnvm="$root/target/release/fnvm"
fi
[[ -x $fnvm ]] || die "$fnvm is not an executable"

pick() {
    local f
    for f in "$@"; do
        [[ -f $f ]] && { echo "$f"; return 0; }
    done
    die "none of $* exists (run benches/build-guests.sh or scripts/guests.sh)"
}
hello=$(pick "$root/benches/compare/guests/out/hello-rust.wasm" "$root/target/guests/rust/hello.wasm")
big=$(pick "$root/benches/compare/guests/out/hello-go.wasm" "$root/target/guests/go/hello.wasm")

mkdir -p "$out/logs" "$out/raw"
rm -f "$out"/raw/*.txt
data=$(mktemp -d "$out/data.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$data"
    [[ -n ${dbname:-} ]] && psql "$FNVM_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $dbname" >/dev/null 2>&1
    true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
    echo "$p"
}
api_port=$(free_port 27280)
http_port=$(free_port $((api_port + 1)))
router_port=$(free_port $((http_port + 1)))
mkdir -p "$data/node" "$data/router"

# PostgreSQL (a fresh database) and the S3-compatible server.
while IFS='=' read -r k v; do
    [[ -n $k ]] && export "$k=$v"
done < <("$root/scripts/services.sh" postgres s3 2>"$out/logs/services.log" | grep '=')
[[ -n ${FNVM_TEST_POSTGRES_URL:-} ]] || die "scripts/services.sh printed no PostgreSQL URL; see $out/logs/services.log"
dbname="fnvm_bench_fleet_$$"
psql "$FNVM_TEST_POSTGRES_URL" -qc "CREATE DATABASE $dbname" >/dev/null
db="${FNVM_TEST_POSTGRES_URL%/*}/$dbname"
export AWS_ENDPOINT_URL="$FNVM_TEST_S3_ENDPOINT" AWS_ALLOW_HTTP=true
store="s3://$FNVM_TEST_S3_BUCKET/bench-fleet-$$"

# The API and the worker in one process; the router in another.
"$fnvm" serve --data-dir "$data/node" --database-url "$db" --artifact-store "$store" \
    --api-listen "127.0.0.1:$api_port" \
    --http-listen "127.0.0.1:$http_port" --idle-to-zero-ms 1500 --scale-in-after-ms 1000 \
    >"$out/logs/node.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 60))
until curl -fs "http://127.0.0.1:$api_port/healthz" >/dev/null; do
    ((SECONDS < deadline)) || die "the API did not answer; see $out/logs/node.log"
    sleep 0.2
done
"$fnvm" serve --role router --data-dir "$data/router" --database-url "$db" \
    --router-listen "127.0.0.1:$router_port" >"$out/logs/router.log" 2>&1 &
pids+=($!)

token=$("$fnvm" admin token create --org bench --data-dir "$data/node" --database-url "$db" | awk '{w = $NF} END {print w}')
operator=$("$fnvm" admin token create --operator --data-dir "$data/node" --database-url "$db" | awk '{w = $NF} END {print w}')
api=(--org bench --api "http://127.0.0.1:$api_port" --token "$token")
deploy() { # NAME FILE MAX_INSTANCES -> function id
    local json fid
    json=$("$fnvm" functions create --name "$1" --max-instances "$3" "${api[@]}")
    fid=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' <<<"$json" | head -1)
    [[ -n $fid ]] || die "no id in: $json"
    "$fnvm" functions deploy "$2" "$fid" "${api[@]}" >>"$out/logs/deploy.log" 2>&1 ||
        die "deploying $2 failed; see $out/logs/"
    echo "$fid"
}
fid=$(deploy bench-hello "$hello" 64)
direct="http://127.0.0.1:$http_port/$fid"
routed="http://127.0.0.1:$router_port/$fid"
for u in "$direct" "$routed"; do
    deadline=$((SECONDS + 30))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' "$u") == 200 ]]; do
        ((SECONDS < deadline)) || die "$u does not answer 200; see $out/logs/"
        sleep 0.2
    done
done

# (1) direct vs router, alternating.
tsv="$out/results.tsv"
printf 'path\tconnections\tround\treq_per_s\tp50_ms\tp99_ms\n' >"$tsv"
ms() { # wrk latency ("1.23ms", "456.00us", "1.2s") -> ms
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}
IFS=, read -ra conns <<<"$connections"
for c in "${conns[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
        for path in direct router; do
            u=$direct
            [[ $path == router ]] && u=$routed
            raw="$out/raw/$path-c$c-r$r.txt"
            wrk -t2 -c"$c" -d"${duration}s" --latency "$u" >"$raw"
            rps=$(awk '/^Requests\/sec/ {print $2}' "$raw")
            p50=$(ms "$(awk '$1 == "50%" {print $2}' "$raw")")
            p99=$(ms "$(awk '$1 == "99%" {print $2}' "$raw")")
            errors=$(awk '/Non-2xx|Socket errors/' "$raw")
            [[ -z $errors ]] || log "$path c$c r$r: $errors"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$c" "$r" "$rps" "$p50" "$p99" >>"$tsv"
            log "$path c=$c round $r: $rps req/s, p50 $p50 ms, p99 $p99 ms"
        done
    done
done

# (2) cold starts of the 2 MB module.
big_fid=$(deploy bench-big "$big" 4)
big_url="http://127.0.0.1:$http_port/$big_fid"
cold_tsv="$out/cold.tsv"
printf 'round\ttotal_ms\tload_ms\twait_ms\twarm_ms\n' >"$cold_tsv"
held() {
    curl -s -H "Authorization: Bearer $operator" "http://127.0.0.1:$api_port/v4/fleet/placements" |
        grep -c "\"functionId\":\"$big_fid\"" || true
}
for ((i = 1; i <= colds; i++)); do
    curl -s -o /dev/null "$big_url"
    deadline=$((SECONDS + 60))
    while [[ $(held) != 0 ]]; do
        ((SECONDS < deadline)) || die "the big function never scaled to zero; see $out/logs/node.log"
        sleep 0.2
    done
    rm -f "$data/node/artifact-cache/"*
    headers="$out/cold.headers"
    total=$(curl -s -o /dev/null -D "$headers" -w '%{time_total}' "$big_url")
    cold=$(tr -d '\r' <"$headers" | sed -n 's/^[Ff]nvm-[Cc]old-[Ss]tart: *//p')
    [[ -n $cold ]] || die "no Fnvm-Cold-Start header on a request after zero: $(cat "$headers")"
    load=$(sed -n 's/.*load_ms=\([0-9]*\).*/\1/p' <<<"$cold")
    wait=$(sed -n 's/.*wait_ms=\([0-9]*\).*/\1/p' <<<"$cold")
    warm=$(curl -s -o /dev/null -w '%{time_total}' "$big_url")
    printf '%s\t%.1f\t%s\t%s\t%.1f\n' "$i" "$(awk -v t="$total" 'BEGIN {print t * 1000}')" \
        "$load" "$wait" "$(awk -v t="$warm" 'BEGIN {print t * 1000}')" >>"$cold_tsv"
    log "cold start $i: $(tail -1 "$cold_tsv")"
done

median() { sort -g | awk '{a[NR] = $1} END {if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
{
    echo "fnvm commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'); $(nproc) cores; wrk -t2, ${duration}s runs, $rounds rounds alternating."
    echo
    echo "| connections | direct req/s | router req/s | router / direct | direct p50 / p99 ms | router p50 / p99 ms |"
    echo "|---|---|---|---|---|---|"
    for c in "${conns[@]}"; do
        col() { awk -F'\t' -v p="$1" -v c="$c" -v k="$2" '$1 == p && $2 == c {print $k}' "$tsv" | median; }
        d=$(col direct 4) r=$(col router 4)
        printf '| %s | %.0f | %.0f | %.2f | %s / %s | %s / %s |\n' "$c" "$d" "$r" \
            "$(awk -v a="$r" -v b="$d" 'BEGIN {print a / b}')" \
            "$(col direct 5)" "$(col direct 6)" "$(col router 5)" "$(col router 6)"
    done
    echo
    echo "Cold start from zero of $(basename "$big") ($(stat -c %s "$big") bytes), $colds times (medians):"
    echo
    echo "| total (curl) ms | load_ms (fetch + prepare) | wait_ms (share) | warm request ms |"
    echo "|---|---|---|---|"
    c2() { awk -F'\t' -v k="$1" 'NR > 1 {print $k}' "$cold_tsv" | median; }
    printf '| %s | %s | %s | %s |\n' "$(c2 2)" "$(c2 3)" "$(c2 4)" "$(c2 5)"
} | tee "$out/summary.md"
