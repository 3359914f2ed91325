// fnvm's JavaScript API, evaluated once when the engine is pre-initialised (before the user's
// script). The script's value is a function taking the engine's natives (see src/natives.rs)
// and returning what src/main.rs calls: `check()` after the user's script was evaluated,
// `run(trigger, input, env)` per invocation, `formatError(e)` for uncaught exceptions.
(function (native) {
  "use strict";
  const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
  const IDENT = /^[A-Za-z_$][\w$]*$/;

  // --- console -------------------------------------------------------------------------------
  function inspect(v, depth, seen) {
    switch (typeof v) {
      case "string":
        return depth === 0 ? v : JSON.stringify(v);
      case "number":
        return Object.is(v, -0) ? "-0" : String(v);
      case "boolean":
      case "undefined":
        return String(v);
      case "bigint":
        return `${v}n`;
      case "symbol":
        return v.toString();
      case "function":
        return v.name ? `[Function: ${v.name}]` : "[Function (anonymous)]";
    }
    if (v === null) return "null";
    if (v instanceof Error) return errorText(v);
    if (seen.includes(v)) return "[Circular]";
    if (v instanceof Date) return isNaN(v) ? "Invalid Date" : v.toISOString();
    if (v instanceof RegExp) return String(v);
    if (v instanceof Promise) return "Promise {}";
    if (depth > 3) return Array.isArray(v) ? "[Array]" : "[Object]";
    seen.push(v);
    try {
      const inner = (x) => inspect(x, depth + 1, seen);
      const list = (open, items, close) =>
        items.length === 0 ? open + close : `${open} ${items.join(", ")} ${close}`;
      if (Array.isArray(v)) return list("[", v.map(inner), "]");
      if (ArrayBuffer.isView(v)) {
        const items = Array.from(v.length > 64 ? v.slice(0, 64) : v, String);
        if (v.length > 64) items.push(`... ${v.length - 64} more`);
        return `${v.constructor.name}(${v.length}) ` + list("[", items, "]");
      }
      if (v instanceof ArrayBuffer) return `ArrayBuffer { byteLength: ${v.byteLength} }`;
      if (v instanceof Map) {
        const items = [...v].map(([k, x]) => `${inner(k)} => ${inner(x)}`);
        return `Map(${v.size}) ` + list("{", items, "}");
      }
      if (v instanceof Set) return `Set(${v.size}) ` + list("{", [...v].map(inner), "}");
      const items = Object.keys(v).map(
        (k) => `${IDENT.test(k) ? k : JSON.stringify(k)}: ${inner(v[k])}`,
      );
      const proto = Object.getPrototypeOf(v);
      const name = proto === null ? "[Object: null prototype] " :
        proto.constructor && proto.constructor !== Object && proto.constructor.name ?
          proto.constructor.name + " " : "";
      return name + list("{", items, "}");
    } catch (e) {
      return "[object]";
    } finally {
      seen.pop();
    }
  }

  function format(args) {
    return args.map((a) => inspect(a, 0, [])).join(" ") + "\n";
  }

  function errorText(e) {
    let head;
    try {
      head = `${e.name}: ${e.message}`;
    } catch (_) {
      head = "Error";
    }
    // The API's own frames (the caller of the handler) are noise for the user.
    const stack = typeof e.stack === "string" ?
      e.stack.split("\n").filter((l) => !l.includes("fnvm:prelude")).join("\n").trimEnd() : "";
    if (!stack) return head;
    // QuickJS's stack holds the frames only; some engines start it with the head line.
    return stack.startsWith(head) ? stack : `${head}\n${stack}`;
  }

  function formatError(e) {
    return `Uncaught ${e instanceof Error ? errorText(e) : inspect(e, 1, [])}\n`;
  }

  // console.log goes to stdout, except under the HTTP trigger, whose stdout is the response.
  let logFd = 1;
  const out = (...a) => native.write(logFd, format(a));
  const err = (...a) => native.write(2, format(a));
  globalThis.console = {
    log: out,
    info: out,
    debug: out,
    error: err,
    warn: err,
    trace: (...a) => native.write(2, format(["Trace:", ...a]) + new Error().stack),
  };

  // --- globals -------------------------------------------------------------------------------
  // The snapshot would freeze QuickJS's seed: the engine reseeds this one per invocation.
  Math.random = native.random;
  globalThis.process = { env: {} };

  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(s = "") {
      return native.utf8encode(String(s));
    }
  }
  class TextDecoder {
    get encoding() {
      return "utf-8";
    }
    decode(b) {
      return b === undefined ? "" : native.utf8decode(bytes(b));
    }
  }
  globalThis.TextEncoder = TextEncoder;
  globalThis.TextDecoder = TextDecoder;
  if (typeof globalThis.btoa !== "function") {
    globalThis.btoa = (s) => {
      s = String(s);
      const b = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 255) throw new TypeError("btoa: the string has characters outside Latin-1");
        b[i] = c;
      }
      return native.b64encode(b);
    };
  }
  if (typeof globalThis.atob !== "function") {
    globalThis.atob = (s) => String.fromCharCode(...native.b64decode(String(s)));
  }

  // --- net: outbound sockets (fnvm's host_tcp_connect / host_tls_connect) ---------------------
  // The natives block (reads wait for data until the invocation's deadline); the Promises are
  // settled when returned. The network exists only in invocations: `run` sets `invoking`, and a
  // connection attempted while the script is evaluated at build time fails the build (`check`).
  let invoking = false;
  let buildTimeConnect = null;
  // WASI errnos: name and what it means for a connection (hostcalls/NET.md).
  const ERRNOS = {
    2: ["EACCES", "refused by the egress policy"],
    6: ["EAGAIN", "resource temporarily unavailable"],
    8: ["EBADF", "the connection is closed"],
    13: ["ECONNABORTED", "the server's TLS certificate failed verification"],
    14: ["ECONNREFUSED", "connection refused"],
    15: ["ECONNRESET", "connection reset by the server"],
    19: ["EDQUOT", "the invocation's network byte budget is spent"],
    21: ["EFAULT", "bad address"],
    23: ["EHOSTUNREACH", "the host name does not resolve"],
    28: ["EINVAL", "invalid argument (the address must be host:port, the hostname a DNS name or an IP)"],
    29: ["EIO", "input/output error"],
    33: ["EMFILE", "too many connections open in this invocation"],
    38: ["ENETDOWN", "network is down"],
    40: ["ENETUNREACH", "network unreachable"],
    53: ["ENOTCONN", "not connected"],
    57: ["ENOTSOCK", "not a socket"],
    58: ["ENOTSUP", "not supported"],
    64: ["EPIPE", "broken pipe (the server closed the connection)"],
    65: ["EPROTO", "TLS protocol error"],
    73: ["ETIMEDOUT", "connecting timed out"],
    76: ["ENOTCAPABLE", "this function has no network access (egress is not enabled for it)"],
  };
  function netError(errno, what) {
    const [code, text] = ERRNOS[errno] || [`E${errno}`, `WASI errno ${errno}`];
    const e = new Error(`${code}: ${text} (${what})`);
    e.code = code;
    e.errno = errno;
    return e;
  }
  // Runs `f` now: its value or exception as a settled Promise.
  const settle = (f) => {
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(e);
    }
  };

  class WasiTcpConn {
    #fd;
    #closed = false;
    constructor(token, fd, address, hostname) {
      if (token !== CONN) throw new TypeError("use net.WasiTcpConn.connect(address)");
      this.#fd = fd;
      this.address = address;
      this.tls = hostname !== undefined;
      if (this.tls) this.hostname = hostname;
    }

    // connect(address) for TCP; connect(address, {tls: true, hostname}) for TLS.
    static connect(address, options) {
      address = String(address);
      const tls = !!(options && options.tls);
      const hostname = tls ? (options.hostname == null ? "" : String(options.hostname)) : undefined;
      const what = `${tls ? "connectTls" : "connect"} ${address}`;
      if (!invoking) {
        buildTimeConnect = buildTimeConnect || address;
        throw new Error(`net.WasiTcpConn.${what}: there is no network while the script is ` +
          "evaluated at build time; connect inside trigger_http or main");
      }
      return settle(() => {
        const r = native.netConnect(address, hostname);
        if (r < 0) throw netError(-r, what);
        return new WasiTcpConn(CONN, r, address, hostname);
      });
    }

    // connectTls(address, hostname?): as connect(address, {tls: true, hostname}).
    static connectTls(address, hostname) {
      return WasiTcpConn.connect(address, { tls: true, hostname });
    }

    #open(what) {
      if (this.#closed) throw netError(8, `${what} ${this.address}`);
      return this.#fd;
    }

    // 1 to `max` bytes (64 KiB by default, 16 MiB at most) as soon as some are there; empty at
    // the end of the stream.
    read(max) {
      return settle(() => {
        const r = native.netRead(this.#open("read"), max === undefined ? 65536 : Number(max));
        if (typeof r === "number") throw netError(r, `read from ${this.address}`);
        return r;
      });
    }

    // Everything until the end of the stream.
    readAll() {
      return settle(() => {
        const r = native.netReadAll(this.#open("readAll"));
        if (typeof r === "number") throw netError(r, `read from ${this.address}`);
        return r;
      });
    }

    // Everything until the end of the stream, decoded as UTF-8.
    text() {
      return this.readAll().then((b) => native.utf8decode(b));
    }

    // Sends all of `data` (a string as UTF-8, or bytes): the byte count.
    write(data) {
      return settle(() => {
        const fd = this.#open("write");
        const b = typeof data === "string" ? native.utf8encode(data) : bytes(data);
        if (!b) throw new TypeError("write: data must be a string, a Uint8Array or an ArrayBuffer");
        const r = native.netWrite(fd, b);
        if (r < 0) throw netError(-r, `write to ${this.address}`);
        return r;
      });
    }

    // No more writes: the server reads the end of the stream (TLS: close_notify).
    closeWrite() {
      return settle(() => {
        const e = native.netShutdown(this.#open("closeWrite"), 2);
        if (e !== 0) throw netError(e, `closeWrite ${this.address}`);
      });
    }

    // Closes the connection (again: nothing). Every connection is closed when the invocation ends.
    close() {
      if (this.#closed) return;
      this.#closed = true;
      native.netClose(this.#fd);
    }
  }
  const CONN = Symbol("WasiTcpConn");
  globalThis.net = { WasiTcpConn };

  // --- requests and responses ----------------------------------------------------------------
  function bytes(v) {
    if (v instanceof Uint8Array) return v;
    if (v instanceof ArrayBuffer) return new Uint8Array(v);
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    return null;
  }

  // Header names are case-insensitive: `headers["User-Agent"]` finds `user-agent`. The target
  // holds lowercase names (what Object.keys and JSON.stringify show); `headers.get(name)` too.
  function makeHeaders(raw) {
    const target = Object.create(null);
    for (const k of Object.keys(raw || {})) target[k.toLowerCase()] = String(raw[k]);
    const get = (name) => {
      const k = String(name).toLowerCase();
      return hasOwn(target, k) ? target[k] : null;
    };
    return new Proxy(target, {
      get(t, k) {
        if (typeof k !== "string") return undefined;
        const l = k.toLowerCase();
        if (hasOwn(t, l)) return t[l];
        return k === "get" ? get : k === "has" ? (n) => get(n) !== null : undefined;
      },
      has: (t, k) => typeof k === "string" && hasOwn(t, k.toLowerCase()),
      getOwnPropertyDescriptor: (t, k) =>
        typeof k === "string" ? Reflect.getOwnPropertyDescriptor(t, k.toLowerCase()) : undefined,
      set(t, k, v) {
        if (typeof k === "string") t[k.toLowerCase()] = String(v);
        return true;
      },
      deleteProperty(t, k) {
        if (typeof k === "string") delete t[k.toLowerCase()];
        return true;
      },
    });
  }

  function makeRequest(r) {
    const str = (v) => (typeof v === "string" ? v : "");
    const path = str(r.path);
    const query = str(r.query);
    let body = str(r.body);
    if (r.bodyEncoding === "base64") body = native.b64decode(body);
    return {
      method: str(r.method) || "GET",
      uri: str(r.uri) || (query ? `${path}?${query}` : path),
      path,
      query,
      headers: makeHeaders(r.headers),
      body,
    };
  }

  // The raw mode's request, from the CGI-style variables.
  function cgiRequest(env, body) {
    const headers = {};
    for (const k of Object.keys(env)) {
      if (k.startsWith("HTTP_")) headers[k.slice(5).toLowerCase().replace(/_/g, "-")] = env[k];
    }
    if (env.CONTENT_TYPE !== undefined) headers["content-type"] = env.CONTENT_TYPE;
    if (env.CONTENT_LENGTH !== undefined) headers["content-length"] = env.CONTENT_LENGTH;
    const path = env.PATH_INFO || "";
    const query = env.QUERY_STRING || "";
    return makeRequest({ method: env.REQUEST_METHOD, path, query, headers, body });
  }

  // A value that becomes a body: string, bytes, nothing, or anything else as JSON.
  function bodyOf(v) {
    if (v === undefined || v === null) return "";
    if (typeof v === "string") return v;
    const b = bytes(v);
    if (b) return b;
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function normalize(r) {
    if (r === undefined || r === null) return {};
    if (typeof r !== "object" || bytes(r)) return { body: r };
    return r;
  }

  function responseJson(r) {
    r = normalize(r);
    const out = {};
    if (r.status !== undefined && r.status !== null) {
      const s = Number(r.status);
      if (!Number.isInteger(s)) throw new TypeError(`response status ${r.status} is not an integer`);
      out.status = s;
    }
    if (r.statusText !== undefined && r.statusText !== null) out.statusText = String(r.statusText);
    const headers = {};
    let contentType = false;
    const add = (k, v) => {
      k = String(k);
      if (k.toLowerCase() === "content-type") contentType = true;
      headers[k] = Array.isArray(v) ? v.map(String).join(", ") : String(v);
    };
    const h = r.headers;
    if (h instanceof Map || (h && typeof h.forEach === "function" && !Array.isArray(h))) {
      h.forEach((v, k) => add(k, v));
    } else if (h && typeof h === "object") {
      for (const k of Object.keys(h)) add(k, h[k]);
    }
    const raw = r.body;
    let body = bodyOf(raw);
    if (raw !== null && typeof raw === "object" && !bytes(raw) && !contentType) {
      headers["Content-Type"] = "application/json";
    }
    out.headers = headers;
    if (typeof body === "string") {
      out.body = body;
      out.bodyEncoding = "utf8";
    } else {
      out.body = native.b64encode(body);
      out.bodyEncoding = "base64";
    }
    return JSON.stringify(out) + "\n";
  }

  const handler = (name) => {
    const f = name === "trigger_http" ?
      (typeof trigger_http === "function" ? trigger_http : undefined) :
      (typeof main === "function" ? main : undefined);
    return f;
  };
  const then = (v, f) => (v !== null && typeof v === "object" && typeof v.then === "function" ?
    Promise.resolve(v).then(f) : f(v));

  // One invocation: returns stdout's content (a string or bytes), or a Promise of it.
  function run(trigger, input, env) {
    invoking = true;
    process.env = env;
    const http = handler("trigger_http");
    const mainFn = handler("main");
    if (trigger === "http") {
      logFd = 2;
      let doc;
      try {
        doc = JSON.parse(input);
      } catch (e) {
        throw new Error(`the request on stdin is not JSON: ${e.message}`);
      }
      if (doc === null || typeof doc !== "object") throw new Error("the request is not an object");
      const request = makeRequest(doc);
      if (http) return then(http(request), responseJson);
      return then(mainFn(typeof request.body === "string" ? request.body :
        native.utf8decode(request.body)), (v) => responseJson({ body: v }));
    }
    logFd = 1;
    if (mainFn) return then(mainFn(input), bodyOf);
    return then(http(cgiRequest(env, input)), (r) => bodyOf(normalize(r).body));
  }

  function check() {
    if (buildTimeConnect !== null) {
      return `the script connected to ${buildTimeConnect} while it was evaluated at build time, ` +
        "where there is no network: open connections inside trigger_http or main (per invocation)";
    }
    if (!handler("trigger_http") && !handler("main")) {
      return "the script defines neither `function trigger_http(request)` nor `function main(input)`";
    }
    return undefined;
  }

  return { run, check, formatError };
})
