#!/usr/bin/env bash
# Starts an S3-compatible server for the tests (called by scripts/services.sh s3): moto's server,
# from PyPI, installed under target/toolchains/moto, listening on 127.0.0.1:$port, with the
# bucket $bucket. Idempotent: a server that already answers (from an earlier run: it outlives
# the tests that started it) is reused. Prints on stdout only the settings (see
# scripts/services.sh); progress goes to stderr. Its pid and log are in $FNVM_SERVICES_DIR/s3.
#
# Usage: scripts/services/s3.sh          start (or reuse) the server, print the settings
#        scripts/services/s3.sh stop     stop the server this script started
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$PWD
state=${FNVM_SERVICES_DIR:-$root/target/services}/s3
prefix=$root/target/toolchains/moto
# moto's S3 and its HTTP server (the `server` extra would also bring every other AWS service's
# dependencies: three times the size, for nothing the tests use).
moto_version=5.2.5
packages=("moto[s3]==$moto_version" "flask==3.1.3" "flask-cors==6.0.5")
# A fixed, unusual port, so that every run finds the server an earlier one left.
port=59000
endpoint=http://127.0.0.1:$port
bucket=fnvm-test
# moto accepts any credentials; these only have to be the same in every run.
access_key_id=fnvm-test
secret_access_key=fnvm-test-secret
region=us-east-1

say() { echo "s3: $*" >&2; }
fail() {
    echo "s3: error: $*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 || fail "python3 not found (needed for moto's S3 server)"
mkdir -p "$state"
# One caller at a time (test processes start services concurrently). The server is started
# with this descriptor closed, or it would hold the lock for as long as it runs.
exec 9>"$state/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

# http METHOD PATH: the HTTP status of an unsigned request to the server (000 if none answers).
http() {
    python3 - "$1" "$endpoint$2" <<'EOF'
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[2], method=sys.argv[1])
try:
    print(urllib.request.urlopen(request, timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

# Whether moto (not some other server on the port) answers: its dashboard is there. (Not
# /moto-api/data.json, which walks every service's models and fails without the `server`
# extra's packages.)
answers() { [ "$(http GET /moto-api/)" = 200 ]; }

running_pid() {
    local pid
    pid=$(cat "$state/pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

if [ "${1:-}" = stop ]; then
    if pid=$(running_pid); then
        say "stopping the server (pid $pid)"
        kill "$pid"
    fi
    rm -f "$state/pid"
    exit 0
fi

install_moto() {
    if [ -f "$prefix/.installed" ] && [ "$(cat "$prefix/.installed")" = "${packages[*]}" ]; then
        return
    fi
    say "installing ${packages[*]} (pip) into $prefix"
    rm -rf "$prefix"
    # --target installs beside, not into, the system's packages. Everything pip says goes to
    # stderr: stdout carries only the settings.
    local pip=(env PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet
        --disable-pip-version-check --no-warn-conflicts --target "$prefix")
    "${pip[@]}" "${packages[@]}" >&2 ||
        "${pip[@]}" --break-system-packages "${packages[@]}" >&2 ||
        fail "pip could not install ${packages[*]}"
    PYTHONPATH=$prefix python3 -c 'import moto.server' ||
        fail "moto was installed into $prefix but does not import"
    echo "${packages[*]}" >"$prefix/.installed"
}

# wait_until_answers SECONDS: whether the server answers within that time (and is still
# running: the pid file names it).
wait_until_answers() {
    local tries=$(($1 * 2))
    until answers; do
        kill -0 "$(cat "$state/pid" 2>/dev/null)" 2>/dev/null || return 1
        tries=$((tries - 1))
        [ $tries -gt 0 ] || return 1
        sleep 0.5
    done
}

start() {
    if pid=$(running_pid); then
        # Ours but not answering: still starting, or busy with another test run's requests;
        # only one that stays silent is replaced (killing it would fail the tests using it).
        say "waiting for the server (pid $pid) to answer"
        if wait_until_answers 30; then return; fi
        say "the server (pid $pid) does not answer; restarting it"
        kill "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$state/pid"
    say "starting moto's server on $endpoint (log: $state/log)"
    # In a session of its own (setsid), the server outlives the test run that started it; its
    # descriptors go to the log and /dev/null, never to the caller's pipes (the tests read
    # stdout to its end).
    local detach=()
    if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi
    PYTHONPATH=$prefix "${detach[@]}" python3 -m moto.server -H 127.0.0.1 -p "$port" \
        </dev/null >"$state/log" 2>&1 9>&- &
    echo $! >"$state/pid"
    if ! wait_until_answers 60; then
        tail -n 20 "$state/log" >&2 || true
        fail "moto's server did not start on $endpoint (is port $port taken?); its log ends above"
    fi
}

if answers; then
    say "reusing the server on $endpoint"
else
    install_moto
    start
fi

case $(http HEAD "/$bucket") in
200) ;;
404)
    say "creating the bucket $bucket"
    status=$(http PUT "/$bucket")
    [ "$status" = 200 ] || fail "creating the bucket $bucket: HTTP $status"
    ;;
*) fail "looking up the bucket $bucket: no answer" ;;
esac

echo "FNVM_TEST_S3_ENDPOINT=$endpoint"
echo "FNVM_TEST_S3_BUCKET=$bucket"
echo "AWS_ACCESS_KEY_ID=$access_key_id"
echo "AWS_SECRET_ACCESS_KEY=$secret_access_key"
echo "AWS_REGION=$region"
