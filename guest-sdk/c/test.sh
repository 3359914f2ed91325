#!/usr/bin/env bash
# Host test of fnvm_http.h: builds test_host.c with the host's C compilers (cc, and clang when
# it is there) under AddressSanitizer and UBSan with warnings as errors, runs its checks, then
# drives `test_host read` (fnvm_http_request_read) through stdin: a request, a malformed one,
# an empty one, and one over a small FNVM_HTTP_MAX_REQUEST_BYTES (413). Also compiles the
# header for wasm32-wasi when clang can, the way scripts/guests.sh builds the C guests.
# Usage: guest-sdk/c/test.sh     (exit status non-zero on any failure)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
    echo "test.sh: FAIL: $*" >&2
    exit 1
}

# shellcheck disable=SC2054 # the comma is -fsanitize's list, not an array separator
flags=(-std=c99 -D_POSIX_C_SOURCE=200809L -O1 -g -Wall -Wextra -Werror -pedantic
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
compilers=(cc)
if command -v clang >/dev/null 2>&1; then compilers+=(clang); fi

# expect_json FILE FIELD VALUE: FILE holds one JSON object whose FIELD is VALUE (python3 reads
# it, an independent JSON reader).
expect_json() {
    python3 - "$@" <<'PY' || fail "$1: $2 is not $3: $(cat "$1")"
import json, sys
path, field, want = sys.argv[1:4]
with open(path, encoding="utf-8") as f:
    text = f.read()
value = json.loads(text)
got = value
for part in field.split("."):
    got = got[part]
sys.exit(0 if str(got) == want else 1)
PY
}

for compiler in "${compilers[@]}"; do
    echo "--- $compiler"
    "$compiler" "${flags[@]}" -I "$here" -o "$work/test_host" "$here/test_host.c"
    "$compiler" "${flags[@]}" -DFNVM_HTTP_MAX_REQUEST_BYTES=1000 -I "$here" \
        -o "$work/test_small" "$here/test_host.c"
    "$work/test_host"
    # Including the header and using none of it must not warn either (static inline).
    printf '#include "fnvm_http.h"\nint main(void) { return 0; }\n' >"$work/empty.c"
    "$compiler" "${flags[@]}" -I "$here" -c -o "$work/empty.o" "$work/empty.c"

    out=$work/out.json
    printf '%s' '{"method":"PUT","uri":"/x?y=1","path":"/x","query":"y=1","headers":{"user-agent":"t/1"},"body":"AP8=","bodyEncoding":"base64"}' |
        "$work/test_host" read >"$out"
    expect_json "$out" status 200
    expect_json "$out" headers.X-Method PUT
    expect_json "$out" headers.X-Path /x
    expect_json "$out" headers.X-UA t/1
    expect_json "$out" body AP8=
    expect_json "$out" bodyEncoding base64

    printf 'hello, raw body' | "$work/test_host" read >"$out" 2>"$work/err"
    expect_json "$out" status 400
    grep -q "not a JSON object" "$out" || fail "400 without its reason: $(cat "$out")"
    grep -q "trigger=http" "$work/err" || fail "no reason on stderr"

    "$work/test_host" read </dev/null >"$out" 2>/dev/null
    expect_json "$out" status 400

    # 1000 bytes pass, 1001 do not; and a much larger input stops being read at the limit.
    python3 -c 'import sys; sys.stdout.write("{\"method\":\"GET\",\"x\":\"" + "a" * 977 + "\"}")' >"$work/1000"
    [ "$(wc -c <"$work/1000")" -eq 1000 ] || fail "bad fixture"
    "$work/test_small" read <"$work/1000" >"$out"
    expect_json "$out" status 200
    printf ' ' | cat "$work/1000" - >"$work/1001"
    "$work/test_small" read <"$work/1001" >"$out" 2>/dev/null
    expect_json "$out" status 413
    head -c 5000000 /dev/zero >"$work/big"
    "$work/test_small" read <"$work/big" >"$out" 2>/dev/null
    expect_json "$out" status 413
done

if command -v clang >/dev/null 2>&1 &&
    printf '#include "fnvm_http.h"\nint main(void){struct fnvm_http_request r;return fnvm_http_request_read(&r);}\n' >"$work/g.c" &&
    clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -I "$here" -o "$work/g.wasm" "$work/g.c" 2>"$work/wasm.err"; then
    echo "--- wasm32-wasi: builds"
else
    echo "--- wasm32-wasi: skipped (clang cannot build for wasm32-wasi here: $(head -c 200 "$work/wasm.err" 2>/dev/null))"
fi
echo "test.sh: all passed"
