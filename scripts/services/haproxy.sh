#!/usr/bin/env bash
# Makes HAProxy available for the tests (called by scripts/services.sh haproxy): Debian's
# package, installed when missing. The tests start their own haproxy processes, each with its
# own configuration, in front of fnvm routers; nothing runs here. Prints on stdout only the
# setting (see scripts/services.sh); progress goes to stderr.
#
# Usage: scripts/services/haproxy.sh        install if missing, print the binary's path
#        scripts/services/haproxy.sh stop   nothing to stop
set -euo pipefail

say() { echo "haproxy: $*" >&2; }
fail() {
    say "$*"
    exit 1
}

if [ "${1:-}" = stop ]; then exit 0; fi
bin=$(command -v haproxy || true)
if [ -z "$bin" ] && [ -x /usr/sbin/haproxy ]; then bin=/usr/sbin/haproxy; fi
if [ -z "$bin" ]; then
    command -v apt-get >/dev/null 2>&1 || fail "apt-get not found; install haproxy by hand"
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo -n); fi
    say "installing haproxy (apt-get)"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" \
        apt-get install -y -qq --no-install-recommends haproxy >/dev/null
    bin=$(command -v haproxy || echo /usr/sbin/haproxy)
    [ -x "$bin" ] || fail "haproxy was installed but is not found"
fi
"$bin" -v 2>&1 | sed -n 1p >&2
echo "FNVM_TEST_HAPROXY=$bin"
