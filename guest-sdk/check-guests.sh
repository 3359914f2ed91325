#!/usr/bin/env bash
# Runs the HTTP trigger test guests (target/guests/<lang>/{useragent,echo,badresponse,cgi}.wasm,
# built by scripts/guests.sh) with `fnvm run`, feeding request JSON on stdin the way the worker
# does, and checks what they print: the four useragent guests must print the same bytes for
# the same request, escapes and all; every guest answers 400 to input that is not a request;
# echo returns binary bodies unchanged; the C cgi guest prints its CGI variables and stdin.
# It checks the guest side only: what the worker makes of the output is the worker's tests.
# Runs scripts/guests.sh first (fast when everything is built).
# Usage: guest-sdk/check-guests.sh   (FNVM=path/to/fnvm, default target/release/fnvm)
set -euo pipefail

cd "$(dirname "$0")/.."
mkdir -p target/tmp/check-guests
fnvm=${FNVM:-target/release/fnvm}
guests=target/guests
export FNVM_CACHE_DIR=${FNVM_CACHE_DIR:-$PWD/target/tmp/check-guests/cache}
failed=0
[ -x "$fnvm" ] || { echo "check-guests.sh: no $fnvm (cargo build --release --bin fnvm, or set FNVM)" >&2; exit 1; }
scripts/guests.sh >/dev/null

fail() {
    echo "FAIL: $*" >&2
    failed=1
}

# run WASM STDIN_TEXT [fnvm run options...]: the guest's stdout (as $(...) gives it: without
# trailing newlines); its exit status must be 0.
run() {
    local wasm=$1 input=$2
    shift 2
    # Through a file, not a pipe: a guest need not read all of its stdin.
    printf '%s' "$input" >target/tmp/check-guests/in
    "$fnvm" run --stdin target/tmp/check-guests/in "$@" "$wasm" 2>/dev/null || fail "$wasm exited non-zero on: ${input:0:80}"
}

# run_exact WASM STDIN_TEXT EXPECTED [fnvm run options...]: stdout must be EXPECTED, byte for
# byte (trailing newline included).
run_exact() {
    local wasm=$1 input=$2 expected=$3
    shift 3
    printf '%s' "$input" >target/tmp/check-guests/in
    "$fnvm" run --stdin target/tmp/check-guests/in "$@" "$wasm" >target/tmp/check-guests/out 2>/dev/null || fail "$wasm exited non-zero"
    printf '%s' "$expected" | cmp -s - target/tmp/check-guests/out || fail "$wasm printed $(od -c target/tmp/check-guests/out | head -5)"
}

# json_field JSON FIELD: FIELD of one JSON object (python3's reader, independent of ours).
json_field() {
    python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(v.get(sys.argv[2]))' "$1" "$2"
}

ua_requests=(
    '{"method":"GET","uri":"/","path":"/","query":"","headers":{"user-agent":"curl/8.0"},"body":"","bodyEncoding":"utf8"}'
    '{"method":"GET","uri":"","path":"","query":"","headers":{},"body":"","bodyEncoding":"utf8"}'
    '{"method":"POST","uri":"/a?b=1","path":"/a","query":"b=1","headers":{"accept":"*/*","user-agent":"q\"b\\s/\n\t\u0001 <>& \u00e9\u20ac\ud83d\ude00 \u007f"},"body":"AP8=","bodyEncoding":"base64","future":{"x":[1,2.5e3,true,null]}}'
    ' {"headers" : {"User-Agent" : "upper-case name"} , "method" : "GET"} '
)
for req in "${ua_requests[@]}"; do
    expected=$(run "$guests/rust/useragent.wasm" "$req")
    [ "$(json_field "$expected" status)" = 200 ] || fail "rust useragent: $expected"
    for lang in c go as; do
        got=$(run "$guests/$lang/useragent.wasm" "$req")
        [ "$got" = "$expected" ] || fail "$lang useragent differs from rust on $req:
  rust: $expected
  $lang: $got"
    done
done
echo "useragent: ${#ua_requests[@]} requests, the same output in rust, c, go and as"

# Nested deeper than the SDKs allow (64 levels in fnvm-guest and fnvm_http.h, and in the
# AssemblyScript guest's reader), and a lone surrogate (which they refuse and Go's
# encoding/json replaces by U+FFFD): for the guests of the SDKs only.
deep=$(python3 -c 'print("{\"method\":\"GET\",\"x\":" + "[" * 65 + "]" * 65 + "}")')
bad_requests=('' 'plain raw body' '[]' '{}' '{"method":1}' '{"method":"GET"' '{"method":"GET"} x'
    '{"method":"GET","headers":{"a":1}}' '{"method":"\ud800"}' "$deep")
for req in "${bad_requests[@]}"; do
    for wasm in "$guests"/{rust,c,go,as}/useragent.wasm "$guests/rust/echo.wasm"; do
        if [[ $wasm == */go/* && ($req == "$deep" || $req == *ud800*) ]]; then continue; fi
        got=$(run "$wasm" "$req")
        [ "$(json_field "$got" status)" = 400 ] || fail "$wasm did not answer 400 to ${req:0:80}: ${got:0:200}"
    done
done
echo "useragent, echo: 400 to ${#bad_requests[@]} malformed requests"

# echo: status from ?status, X-Method, the body byte for byte.
got=$(run "$guests/rust/echo.wasm" '{"method":"PUT","path":"/e","query":"status=201&x=1","headers":{},"body":"AP/+gGFi","bodyEncoding":"base64"}')
[ "$got" = '{"status":201,"headers":{"X-Method":"PUT"},"body":"AP/+gGFi","bodyEncoding":"base64"}' ] ||
    fail "echo binary: $got"
got=$(run "$guests/rust/echo.wasm" '{"method":"POST","query":"","headers":{},"body":"h\u00e9llo\n\"x\"","bodyEncoding":"utf8"}')
[ "$got" = '{"status":200,"headers":{"X-Method":"POST"},"body":"héllo\n\"x\"","bodyEncoding":"utf8"}' ] ||
    fail "echo text: $got"
got=$(run "$guests/rust/echo.wasm" '{"method":"GET","query":"status=42"}')
[ "$(json_field "$got" status)" = 42 ] || fail "echo status=42: $got"
got=$(run "$guests/rust/echo.wasm" '{"method":"GET","query":"status=abc"}')
[ "$(json_field "$got" status)" = 400 ] || fail "echo status=abc: $got"
# A random binary body of 100 KiB round-trips.
python3 -c 'import base64,json,os,sys
body = os.urandom(100 * 1024)
open(sys.argv[1], "wb").write(body)
json.dump({"method": "POST", "path": "", "query": "", "headers": {}, "body": base64.b64encode(body).decode(), "bodyEncoding": "base64"}, open(sys.argv[2], "w"))' \
    target/tmp/check-guests/echo-body.bin target/tmp/check-guests/echo-req.json
"$fnvm" run --stdin target/tmp/check-guests/echo-req.json "$guests/rust/echo.wasm" >target/tmp/check-guests/echo-out.json
python3 -c 'import base64,json,sys
r = json.load(open(sys.argv[1]))
assert r["bodyEncoding"] == "base64" and base64.b64decode(r["body"], validate=True) == open(sys.argv[2], "rb").read()' \
    target/tmp/check-guests/echo-out.json target/tmp/check-guests/echo-body.bin || fail "echo: 100 KiB binary body did not round-trip"
echo "echo: status, X-Method, text and binary bodies"

run_exact "$guests/rust/badresponse.wasm" '{"method":"GET"}' $'not json\n'
run_exact "$guests/c/cgi.wasm" $'raw\nbody \xff' $'method=POST path=/a/b query=x=1&y=2 ua=curl/8.0 (x)\nraw\nbody \xff' \
    --env REQUEST_METHOD=POST --env PATH_INFO=/a/b --env QUERY_STRING='x=1&y=2' --env 'HTTP_USER_AGENT=curl/8.0 (x)'
run_exact "$guests/c/cgi.wasm" '' $'method= path= query= ua=\n'
echo "badresponse, cgi: as expected"

if [ $failed -ne 0 ]; then
    echo "check-guests.sh: FAILED" >&2
    exit 1
fi
echo "check-guests.sh: all passed"
