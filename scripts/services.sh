#!/usr/bin/env bash
# Starts the services the tests talk to, on loopback, installing what is missing: Debian's
# PostgreSQL (`postgres`) and an S3-compatible server (`s3`); and makes Debian's HAProxy
# available (`haproxy`: installed only, the tests start their own). Idempotent and fast when
# they already run; every failure is fatal (a test run never skips a service).
#
# Usage: scripts/services.sh [postgres] [s3] [haproxy]   (default: all three)
#        scripts/services.sh stop                        stops the servers (their data stays)
#
# Prints, on stdout and nothing else, one `NAME=VALUE` line per setting the tests need:
#   postgres  FNVM_TEST_POSTGRES_URL       postgres://USER:PASSWORD@127.0.0.1:PORT/DB
#   s3        FNVM_TEST_S3_ENDPOINT         http://127.0.0.1:PORT
#             FNVM_TEST_S3_BUCKET           a bucket that exists
#             AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
#   haproxy   FNVM_TEST_HAPROXY            the haproxy binary
# Progress goes to stderr. State (data directories, logs, pids) lives under target/services.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
export FNVM_SERVICES_DIR="$root/target/services"
mkdir -p "$FNVM_SERVICES_DIR"

names=("$@")
if [ "${names[*]:-}" = stop ]; then
    "$root/scripts/services/postgres.sh" stop
    "$root/scripts/services/s3.sh" stop
    exit 0
fi
if [ ${#names[@]} -eq 0 ]; then names=(postgres s3 haproxy); fi
for name in "${names[@]}"; do
    case $name in
    postgres | s3 | haproxy) "$root/scripts/services/$name.sh" ;;
    *)
        echo "services: unknown service $name (postgres, s3 or haproxy)" >&2
        exit 1
        ;;
    esac
done
