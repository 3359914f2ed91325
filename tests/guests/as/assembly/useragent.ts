// HTTP trigger (?trigger=http), the product description's example: reads the request JSON from
// stdin and answers 200 with Content-Type: text/plain, X-Powered-By: CleverCloud and the body
// "User-Agent: <the request's User-Agent>" (empty when it has none). AssemblyScript's standard
// library has no JSON, so a small strict reader (skipping what it does not need, nesting
// bounded) and writer are here; a request it cannot read gets a 400 response saying why, as
// the Rust and C helpers do.

const MAX_DEPTH = 64;

let text = "";
let pos = 0;
let error = ""; // the first error, "" while there is none

function fail(why: string): bool {
  if (error.length == 0) error = why + " at character " + pos.toString();
  return false;
}

function peek(): i32 {
  return pos < text.length ? text.charCodeAt(pos) : -1;
}

function ws(): void {
  while (pos < text.length) {
    let c = text.charCodeAt(pos);
    if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
    pos++;
  }
}

/** Four hex digits of a \u escape, or -1. */
function hex4(): i32 {
  if (pos + 4 > text.length) return -1;
  let v = 0;
  for (let k = 0; k < 4; k++) {
    let c = text.charCodeAt(pos + k);
    let d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  pos += 4;
  return v;
}

/** The string at the current '"', its escapes decoded; "" with `error` set when malformed. */
function readString(): string {
  pos++; // the opening quote
  let out = "";
  let start = pos;
  while (true) {
    if (pos >= text.length) { fail("unexpected end of input in a string"); return ""; }
    let c = text.charCodeAt(pos);
    if (c == 0x22) {
      out += text.substring(start, pos);
      pos++;
      return out;
    }
    if (c < 0x20) { fail("control character in a string"); return ""; }
    if (c != 0x5c) { pos++; continue; }
    out += text.substring(start, pos);
    pos++;
    let e = peek();
    pos++;
    if (e == 0x22) out += "\"";
    else if (e == 0x5c) out += "\\";
    else if (e == 0x2f) out += "/";
    else if (e == 0x62) out += String.fromCharCode(8);
    else if (e == 0x66) out += String.fromCharCode(12);
    else if (e == 0x6e) out += "\n";
    else if (e == 0x72) out += "\r";
    else if (e == 0x74) out += "\t";
    else if (e == 0x75) {
      let unit = hex4();
      if (unit < 0) { fail("expected four hex digits in a \\u escape"); return ""; }
      if (unit >= 0xdc00 && unit <= 0xdfff) { fail("unpaired surrogate"); return ""; }
      out += String.fromCharCode(unit);
      if (unit >= 0xd800 && unit <= 0xdbff) {
        // Strings are UTF-16 here: the pair is kept as its two units.
        if (peek() != 0x5c || pos + 1 >= text.length || text.charCodeAt(pos + 1) != 0x75) { fail("unpaired surrogate"); return ""; }
        pos += 2;
        let low = hex4();
        if (low < 0xdc00 || low > 0xdfff) { fail("unpaired surrogate"); return ""; }
        out += String.fromCharCode(low);
      }
    } else { fail("invalid escape"); return ""; }
    start = pos;
  }
}

function digits(): i32 {
  let n = 0;
  while (peek() >= 0x30 && peek() <= 0x39) { pos++; n++; }
  return n;
}

/** Checks and skips any value, nesting at most MAX_DEPTH levels. */
function skip(depth: i32): bool {
  let c = peek();
  if (c == 0x22) { readString(); return error.length == 0; }
  if (c == 0x74 || c == 0x66 || c == 0x6e) {
    let word = c == 0x74 ? "true" : c == 0x66 ? "false" : "null";
    if (text.substr(pos, word.length) != word) return fail("invalid literal");
    pos += word.length;
    return true;
  }
  if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
    if (c == 0x2d) pos++;
    if (peek() == 0x30) pos++;
    else if (digits() == 0) return fail("expected a digit");
    if (peek() == 0x2e) { pos++; if (digits() == 0) return fail("expected a digit"); }
    if (peek() == 0x65 || peek() == 0x45) {
      pos++;
      if (peek() == 0x2b || peek() == 0x2d) pos++;
      if (digits() == 0) return fail("expected a digit");
    }
    return true;
  }
  if (c != 0x7b && c != 0x5b) return fail("expected a value");
  if (depth >= MAX_DEPTH) return fail("nesting too deep");
  let close = c == 0x7b ? 0x7d : 0x5d;
  pos++;
  ws();
  if (peek() == close) { pos++; return true; }
  while (true) {
    ws();
    if (close == 0x7d) {
      if (peek() != 0x22) return fail("expected a member name");
      readString();
      if (error.length != 0) return false;
      ws();
      if (peek() != 0x3a) return fail("expected ':'");
      pos++;
      ws();
    }
    if (!skip(depth + 1)) return false;
    ws();
    let d = peek();
    pos++;
    if (d == close) return true;
    if (d != 0x2c) { pos--; return fail("expected ',' or the end of an array or object"); }
  }
}

/** Steps through the object at `pos` (its '{' when `first`): the next member's name, or null
 * at its end or on an error. */
function nextMember(first: bool): string | null {
  ws();
  if (first) {
    pos++;
    ws();
    if (peek() == 0x7d) { pos++; return null; }
  } else {
    let c = peek();
    if (c == 0x7d) { pos++; return null; }
    if (c != 0x2c) { fail("expected ',' or '}'"); return null; }
    pos++;
    ws();
  }
  if (peek() != 0x22) { fail("expected a member name"); return null; }
  let name = readString();
  ws();
  if (peek() != 0x3a) { fail("expected ':'"); return null; }
  pos++;
  ws();
  return error.length == 0 ? name : null;
}

/** Reads the request; its User-Agent ("" when none), or null with `error` set. */
function userAgent(): string | null {
  let ua = "";
  let method = false;
  ws();
  if (peek() != 0x7b) { fail("the request is not a JSON object"); return null; }
  let name = nextMember(true);
  while (name !== null) {
    if (name == "headers" && peek() == 0x7b) {
      let header = nextMember(true);
      while (header !== null) {
        if (peek() != 0x22) { fail("a header's value is not a string"); return null; }
        let value = readString();
        if (header.toLowerCase() == "user-agent") ua = value;
        header = nextMember(false);
      }
    } else if (name == "method" && peek() == 0x22) {
      method = true;
      skip(1);
    } else skip(1);
    if (error.length != 0) return null;
    name = nextMember(false);
  }
  if (error.length != 0) return null;
  ws();
  if (pos != text.length) { fail("unexpected text after the request"); return null; }
  if (!method) { fail("no \"method\" member"); return null; }
  return ua;
}

/** `s` as a JSON string: the same escapes as the Rust, C and Go guests. */
function quote(s: string): string {
  const hex = "0123456789abcdef";
  let out = "\"";
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c != 0x22 && c != 0x5c && c >= 0x20) continue;
    out += s.substring(start, i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 8) out += "\\b";
    else if (c == 12) out += "\\f";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + hex.charAt(c >> 4) + hex.charAt(c & 15);
    start = i + 1;
  }
  return out + s.substring(start) + "\"";
}

function respond(status: i32, headers: string, body: string): void {
  process.stdout.write("{\"status\":" + status.toString() + ",\"headers\":{" + headers +
    "},\"body\":" + quote(body) + ",\"bodyEncoding\":\"utf8\"}\n");
}

// stdin, all of it.
let chunks = new Array<ArrayBuffer>();
let total = 0;
while (true) {
  let buf = new ArrayBuffer(65536);
  let n = process.stdin.read(buf);
  if (n == 0) break;
  chunks.push(buf.slice(0, n));
  total += n;
}
let input = new Uint8Array(total);
let at = 0;
for (let i = 0; i < chunks.length; i++) {
  input.set(Uint8Array.wrap(chunks[i]), at);
  at += chunks[i].byteLength;
}
text = String.UTF8.decode(input.buffer);

let ua = userAgent();
if (ua === null) {
  let why = "useragent: the function could not read its HTTP trigger request: " + error +
    ".\nIt expects to be called with ?trigger=http.\n";
  process.stderr.write(why);
  respond(400, "\"Content-Type\":\"text/plain; charset=utf-8\"", why);
} else {
  respond(200, "\"Content-Type\":\"text/plain\",\"X-Powered-By\":\"CleverCloud\"", "User-Agent: " + ua!);
}
