// The Web API of a Wisp JavaScript function. engine.go evaluates this once per runtime, before
// the function's script (so before the snapshot): it is a function of the native helpers Go
// provides, defines the globals a Workers user expects, and returns the hooks Go calls for each
// request. Internal state lives under symbols, out of the way of user code.
(function (native) {
  "use strict";

  const defineGlobal = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });

  const kHeaders = Symbol("headers");
  const kList = Symbol("list");
  const kGuard = Symbol("guard");
  const kBody = Symbol("body");
  const kUsed = Symbol("used");
  const kStream = Symbol("stream");
  const kMethod = Symbol("method");
  const kURL = Symbol("url");
  const kStatus = Symbol("status");
  const kStatusText = Symbol("statusText");
  const kParts = Symbol("parts");
  const kParams = Symbol("params");
  const kFlat = Symbol("flat");
  const kOwner = Symbol("owner");
  const internal = Symbol("internal");

  const describe = (v) => {
    if (v === null) return "null";
    if (v === undefined) return "undefined";
    if (typeof v === "object") {
      const name = v.constructor && v.constructor.name;
      return name && name !== "Object" ? `a ${name}` : "an object";
    }
    return `a ${typeof v}`;
  };

  // ---------------------------------------------------------------- DOMException

  class DOMException extends Error {
    constructor(message = "", name = "Error") {
      super(message);
      Object.defineProperty(this, "name", { value: String(name), configurable: true, writable: true });
    }
  }

  // ---------------------------------------------------------------- TextEncoder, TextDecoder

  const asBytes = (x, what) => {
    if (x instanceof ArrayBuffer) return new Uint8Array(x);
    if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    throw new TypeError(`${what}: expected an ArrayBuffer or an ArrayBufferView, got ${describe(x)}`);
  };

  const utf8Encode = (s) => new Uint8Array(native.utf8Encode(s));
  const utf8Decode = (u8, fatal = false, ignoreBOM = false) =>
    native.utf8Decode(u8.buffer, u8.byteOffset, u8.byteLength, fatal, ignoreBOM);

  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      return utf8Encode(String(input));
    }
    encodeInto(source, destination) {
      if (!(destination instanceof Uint8Array)) throw new TypeError("TextEncoder.encodeInto: destination must be a Uint8Array");
      let read = 0;
      let written = 0;
      for (const ch of String(source)) {
        const bytes = utf8Encode(ch);
        if (written + bytes.length > destination.length) break;
        destination.set(bytes, written);
        written += bytes.length;
        read += ch.length;
      }
      return { read, written };
    }
  }

  const utf8Labels = new Set(["utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"]);

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    constructor(label = "utf-8", options = {}) {
      if (!utf8Labels.has(String(label).trim().toLowerCase())) {
        throw new RangeError(`TextDecoder: encoding "${label}" is not supported; Wisp decodes utf-8 only`);
      }
      this.#fatal = Boolean(options && options.fatal);
      this.#ignoreBOM = Boolean(options && options.ignoreBOM);
    }
    get encoding() {
      return "utf-8";
    }
    get fatal() {
      return this.#fatal;
    }
    get ignoreBOM() {
      return this.#ignoreBOM;
    }
    decode(input = undefined) {
      if (input === undefined) return "";
      return utf8Decode(asBytes(input, "TextDecoder.decode"), this.#fatal, this.#ignoreBOM);
    }
  }

  // ---------------------------------------------------------------- base64

  const btoa = (data) => {
    const s = native.btoa(String(data));
    if (s === null) throw new DOMException("btoa: the string holds characters outside Latin1", "InvalidCharacterError");
    return s;
  };
  const atob = (data) => {
    const s = native.atob(String(data));
    if (s === null) throw new DOMException("atob: the string is not correctly encoded base64", "InvalidCharacterError");
    return s;
  };

  // ---------------------------------------------------------------- console

  const quote = (s) => "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n") + "'";
  const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

  function inspect(v, depth, seen) {
    switch (typeof v) {
      case "string":
        return depth === 0 ? v : quote(v);
      case "bigint":
        return `${v}n`;
      case "symbol":
        return v.toString();
      case "function":
        return v.name ? `[Function: ${v.name}]` : "[Function (anonymous)]";
      case "object":
        break;
      default:
        return Object.is(v, -0) ? "-0" : String(v);
    }
    if (v === null) return "null";
    if (v instanceof Error) return depth === 0 ? String(v.stack || v) : `[${v}]`;
    if (seen.includes(v)) return "[Circular]";
    if (depth > 2) return Array.isArray(v) ? "[Array]" : "[Object]";
    seen.push(v);
    try {
      const inner = (x) => inspect(x, depth + 1, seen);
      const wrap = (prefix, items, open, close) =>
        items.length === 0 ? `${prefix}${open}${close}` : `${prefix}${open} ${items.join(", ")} ${close}`;
      if (Array.isArray(v)) return wrap("", v.map(inner), "[", "]");
      if (v instanceof Map) return wrap(`Map(${v.size}) `, [...v].map(([k, x]) => `${inner(k)} => ${inner(x)}`), "{", "}");
      if (v instanceof Set) return wrap(`Set(${v.size}) `, [...v].map(inner), "{", "}");
      if (v instanceof Date) return isNaN(v) ? "Invalid Date" : v.toISOString();
      if (v instanceof RegExp) return String(v);
      if (v instanceof Promise) return "Promise {}";
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
        const items = Array.from(v.length > 50 ? v.subarray(0, 50) : v, inner);
        if (v.length > 50) items.push(`... ${v.length - 50} more items`);
        return wrap(`${v.constructor.name}(${v.length}) `, items, "[", "]");
      }
      if (v instanceof ArrayBuffer) return `ArrayBuffer { byteLength: ${v.byteLength} }`;
      if (v instanceof Headers) return wrap("Headers ", [...v].map(([k, x]) => `${quote(k)}: ${quote(x)}`), "{", "}");
      if (v instanceof URL) return `URL ${quote(v.href)}`;
      if (v instanceof URLSearchParams) return wrap("URLSearchParams ", [...v].map(([k, x]) => `${quote(k)} => ${quote(x)}`), "{", "}");
      if (v instanceof Request) return `Request { method: ${quote(v.method)}, url: ${quote(v.url)} }`;
      if (v instanceof Response) return `Response { status: ${v.status}, statusText: ${quote(v.statusText)} }`;
      const proto = Object.getPrototypeOf(v);
      const name = proto === null ? "[Object: null prototype] " :
        proto !== Object.prototype && proto.constructor && proto.constructor.name ? `${proto.constructor.name} ` : "";
      return wrap(name, Object.keys(v).map((k) => `${identifier.test(k) ? k : quote(k)}: ${inner(v[k])}`), "{", "}");
    } finally {
      seen.pop();
    }
  }

  function format(args) {
    let out = "";
    let i = 0;
    if (typeof args[0] === "string" && args[0].includes("%")) {
      const fmt = args[0];
      i = 1;
      for (let j = 0; j < fmt.length; j++) {
        const c = fmt[j];
        if (c !== "%" || j + 1 >= fmt.length) {
          out += c;
          continue;
        }
        const d = fmt[++j];
        if (d === "%") {
          out += "%";
        } else if (i >= args.length || !"sdifjoOc".includes(d)) {
          out += "%" + d;
        } else {
          const a = args[i++];
          switch (d) {
            case "s": out += typeof a === "string" ? a : inspect(a, 1, []); break;
            case "d": case "i": out += typeof a === "bigint" ? `${a}n` : String(d === "i" ? parseInt(a) : Number(a)); break;
            case "f": out += String(parseFloat(a)); break;
            case "j": try { out += JSON.stringify(a); } catch (e) { out += "[Circular]"; } break;
            case "c": break;
            default: out += inspect(a, 1, []);
          }
        }
      }
      if (i < args.length) out += " ";
    }
    return out + Array.prototype.slice.call(args, i).map((a) => inspect(a, 0, [])).join(" ");
  }

  const counts = new Map();
  const timings = new Map();
  const out = (...args) => native.write(1, format(args));
  const err = (...args) => native.write(2, format(args));
  const console = {
    log: out,
    info: out,
    debug: out,
    trace: out,
    dir: (v) => native.write(1, inspect(v, 1, [])),
    warn: err,
    error: err,
    assert: (cond, ...args) => {
      if (!cond) err("Assertion failed" + (args.length ? ": " + format(args) : ""));
    },
    count: (label = "default") => {
      const n = (counts.get(label) || 0) + 1;
      counts.set(label, n);
      out(`${label}: ${n}`);
    },
    countReset: (label = "default") => counts.delete(label),
    time: (label = "default") => timings.set(label, native.now()),
    timeEnd: (label = "default") => {
      if (timings.has(label)) out(`${label}: ${(native.now() - timings.get(label)).toFixed(3)}ms`);
      timings.delete(label);
    },
    timeLog: (label = "default", ...args) => {
      if (timings.has(label)) out(`${label}: ${(native.now() - timings.get(label)).toFixed(3)}ms`, ...args);
    },
  };

  // ---------------------------------------------------------------- crypto, performance

  const crypto = {
    getRandomValues(view) {
      if (!ArrayBuffer.isView(view) || view instanceof DataView || view instanceof Float32Array || view instanceof Float64Array) {
        throw new DOMException("crypto.getRandomValues: expected an integer typed array", "TypeMismatchError");
      }
      if (view.byteLength > 65536) {
        throw new DOMException(`crypto.getRandomValues: ${view.byteLength} bytes requested, at most 65536 allowed`, "QuotaExceededError");
      }
      native.randomFill(view.buffer, view.byteOffset, view.byteLength);
      return view;
    },
    randomUUID() {
      return native.randomUUID();
    },
  };
  const performance = { now: () => native.now(), timeOrigin: Date.now() - native.now() };

  // ---------------------------------------------------------------- timers

  // Timers fire only while a request waits for its handler's promise; those still pending when the
  // response is ready are dropped (engine.go says why).
  const timers = new Map();
  let timerSeq = 0;
  const addTimer = (fn, ms, args, repeat, what) => {
    if (typeof fn !== "function") throw new TypeError(`${what}: callback must be a function`);
    const delay = Math.max(0, Number(ms) || 0);
    const id = ++timerSeq;
    timers.set(id, { fn, args, at: native.now() + delay, every: repeat ? Math.max(1, delay) : -1 });
    return id;
  };
  const setTimeout = (fn, ms = 0, ...args) => addTimer(fn, ms, args, false, "setTimeout");
  const setInterval = (fn, ms = 0, ...args) => addTimer(fn, ms, args, true, "setInterval");
  const clearTimeout = (id) => void timers.delete(id);
  const queueMicrotask = (fn) => {
    if (typeof fn !== "function") throw new TypeError("queueMicrotask: callback must be a function");
    Promise.resolve().then(() => fn());
  };

  // nextTimer returns the milliseconds until the earliest timer is due, or -1 when none is set.
  const nextTimer = () => {
    let at = Infinity;
    for (const t of timers.values()) at = Math.min(at, t.at);
    return at === Infinity ? -1 : Math.max(0, at - native.now());
  };
  // runTimers runs the timers that are due, earliest first.
  const runTimers = () => {
    const now = native.now();
    const due = [...timers].filter(([, t]) => t.at <= now).sort((a, b) => a[1].at - b[1].at || a[0] - b[0]);
    for (const [id, t] of due) {
      if (!timers.has(id)) continue;
      if (t.every < 0) timers.delete(id);
      else t.at = now + t.every;
      try {
        t.fn(...t.args);
      } catch (e) {
        err("Uncaught (in timer)", e);
      }
    }
  };

  // ---------------------------------------------------------------- URL, URLSearchParams

  // Form encoding (application/x-www-form-urlencoded): everything but A-Z a-z 0-9 * - . _ is
  // percent-encoded, space as "+".
  const formEncode = (s) =>
    encodeURIComponent(s).replace(/[!'()~]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase()).replace(/%20/g, "+");
  const formDecode = (s) => {
    s = s.replace(/\+/g, " ");
    try {
      return decodeURIComponent(s);
    } catch (e) {
      return native.percentDecode(s);
    }
  };
  const toUSV = (v) => String(v);

  class URLSearchParams {
    constructor(init = "") {
      this[kList] = [];
      this[kURL] = null;
      if (init instanceof URLSearchParams) {
        this[kList] = init[kList].map(([k, v]) => [k, v]);
      } else if (init !== null && typeof init === "object" || typeof init === "function") {
        if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            const p = [...pair];
            if (p.length !== 2) throw new TypeError("URLSearchParams: each pair must have exactly two items");
            this[kList].push([toUSV(p[0]), toUSV(p[1])]);
          }
        } else {
          for (const k of Object.keys(init)) this[kList].push([toUSV(k), toUSV(init[k])]);
        }
      } else {
        this[internal](String(init));
      }
    }
    [internal](query) {
      if (query.startsWith("?")) query = query.slice(1);
      this[kList] = [];
      for (const part of query.split("&")) {
        if (part === "") continue;
        const eq = part.indexOf("=");
        const k = eq < 0 ? part : part.slice(0, eq);
        const v = eq < 0 ? "" : part.slice(eq + 1);
        this[kList].push([formDecode(k), formDecode(v)]);
      }
    }
    #update() {
      const url = this[kURL];
      if (url !== null) {
        const parts = url[kParts].slice();
        parts[SEARCH] = this[kList].length ? "?" + this.toString() : "";
        url[kParts] = parts;
      }
    }
    get size() {
      return this[kList].length;
    }
    append(name, value) {
      this[kList].push([toUSV(name), toUSV(value)]);
      this.#update();
    }
    delete(name, value = undefined) {
      name = toUSV(name);
      value = value === undefined ? undefined : toUSV(value);
      this[kList] = this[kList].filter(([k, v]) => k !== name || (value !== undefined && v !== value));
      this.#update();
    }
    get(name) {
      name = toUSV(name);
      const e = this[kList].find(([k]) => k === name);
      return e ? e[1] : null;
    }
    getAll(name) {
      name = toUSV(name);
      return this[kList].filter(([k]) => k === name).map(([, v]) => v);
    }
    has(name, value = undefined) {
      name = toUSV(name);
      value = value === undefined ? undefined : toUSV(value);
      return this[kList].some(([k, v]) => k === name && (value === undefined || v === value));
    }
    set(name, value) {
      name = toUSV(name);
      value = toUSV(value);
      const i = this[kList].findIndex(([k]) => k === name);
      if (i < 0) {
        this[kList].push([name, value]);
      } else {
        this[kList][i][1] = value;
        this[kList] = this[kList].filter(([k], j) => j <= i || k !== name);
      }
      this.#update();
    }
    sort() {
      const keyed = this[kList].map((e, i) => [e, i]);
      keyed.sort(([a, i], [b, j]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : i - j));
      this[kList] = keyed.map(([e]) => e);
      this.#update();
    }
    forEach(callback, thisArg = undefined) {
      for (const [k, v] of this) callback.call(thisArg, v, k, this);
    }
    *entries() {
      for (let i = 0; i < this[kList].length; i++) yield [this[kList][i][0], this[kList][i][1]];
    }
    *keys() {
      for (const [k] of this.entries()) yield k;
    }
    *values() {
      for (const [, v] of this.entries()) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return this[kList].map(([k, v]) => formEncode(k) + "=" + formEncode(v)).join("&");
    }
    get [Symbol.toStringTag]() {
      return "URLSearchParams";
    }
  }

  // A URL keeps the array of its parts that native.parseURL returns, never modified (a setter
  // reparses): protocol, username, password, hostname, port, pathname, search, hash, and "1"
  // when the URL has an authority.
  const PROTOCOL = 0, USERNAME = 1, PASSWORD = 2, HOSTNAME = 3, PORT = 4, PATHNAME = 5, SEARCH = 6, HASH = 7, AUTHORITY = 8;
  const parse = (input, base) => native.parseURL(String(input), base === undefined ? undefined : String(base));
  const hrefOf = (p) => {
    let s = p[PROTOCOL];
    if (p[AUTHORITY]) {
      s += "//";
      if (p[USERNAME] || p[PASSWORD]) s += p[USERNAME] + (p[PASSWORD] ? ":" + p[PASSWORD] : "") + "@";
      s += p[HOSTNAME] + (p[PORT] ? ":" + p[PORT] : "");
    }
    return s + p[PATHNAME] + p[SEARCH] + p[HASH];
  };
  const originSchemes = new Set(["http:", "https:", "ws:", "wss:", "ftp:"]);

  class URL {
    constructor(url, base = undefined) {
      this[kParts] = parse(url, base);
      this[kParams] = null;
    }
    static canParse(url, base = undefined) {
      try {
        parse(url, base);
        return true;
      } catch (e) {
        return false;
      }
    }
    static parse(url, base = undefined) {
      try {
        return new URL(url, base);
      } catch (e) {
        return null;
      }
    }
    // [internal] reparses the URL with part i replaced by value, keeping the old parts if that
    // fails (as a setter given a bad value does).
    [internal](i, value) {
      const parts = this[kParts].slice();
      parts[i] = value;
      try {
        this[kParts] = parse(hrefOf(parts));
      } catch (e) {
        return;
      }
      if (i === SEARCH && this[kParams] !== null) this[kParams][internal](this[kParts][SEARCH]);
    }
    get href() {
      return hrefOf(this[kParts]);
    }
    set href(v) {
      this[kParts] = parse(v);
      if (this[kParams] !== null) this[kParams][internal](this[kParts][SEARCH]);
    }
    get origin() {
      const p = this[kParts];
      return p[AUTHORITY] && originSchemes.has(p[PROTOCOL]) ? `${p[PROTOCOL]}//${p[HOSTNAME]}${p[PORT] ? ":" + p[PORT] : ""}` : "null";
    }
    get protocol() {
      return this[kParts][PROTOCOL];
    }
    set protocol(v) {
      v = String(v);
      this[internal](PROTOCOL, v.endsWith(":") ? v : v + ":");
    }
    get username() {
      return this[kParts][USERNAME];
    }
    set username(v) {
      this[internal](USERNAME, encodeURIComponent(String(v)));
    }
    get password() {
      return this[kParts][PASSWORD];
    }
    set password(v) {
      this[internal](PASSWORD, encodeURIComponent(String(v)));
    }
    get host() {
      const p = this[kParts];
      return p[HOSTNAME] + (p[PORT] ? ":" + p[PORT] : "");
    }
    set host(v) {
      const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(String(v));
      if (!m) return;
      const parts = this[kParts].slice();
      parts[HOSTNAME] = m[1];
      if (m[2] !== undefined) parts[PORT] = m[2];
      try {
        this[kParts] = parse(hrefOf(parts));
      } catch (e) {
        // keep the old host
      }
    }
    get hostname() {
      return this[kParts][HOSTNAME];
    }
    set hostname(v) {
      this[internal](HOSTNAME, String(v));
    }
    get port() {
      return this[kParts][PORT];
    }
    set port(v) {
      this[internal](PORT, String(v));
    }
    get pathname() {
      return this[kParts][PATHNAME];
    }
    set pathname(v) {
      v = String(v);
      if (this[kParts][AUTHORITY] && !v.startsWith("/")) v = "/" + v;
      this[internal](PATHNAME, v.replace(/[?#]/g, encodeURIComponent));
    }
    get search() {
      return this[kParts][SEARCH];
    }
    set search(v) {
      v = String(v);
      if (v.startsWith("?")) v = v.slice(1);
      this[internal](SEARCH, v === "" ? "" : "?" + v.replace(/#/g, "%23"));
    }
    get searchParams() {
      if (this[kParams] === null) {
        const params = new URLSearchParams(this[kParts][SEARCH]);
        params[kURL] = this;
        this[kParams] = params;
      }
      return this[kParams];
    }
    get hash() {
      return this[kParts][HASH];
    }
    set hash(v) {
      v = String(v);
      if (v.startsWith("#")) v = v.slice(1);
      this[internal](HASH, v === "" ? "" : "#" + v);
    }
    toString() {
      return this.href;
    }
    toJSON() {
      return this.href;
    }
    get [Symbol.toStringTag]() {
      return "URL";
    }
  }

  // ---------------------------------------------------------------- Headers

  // headerName returns name in lower case, headerValue value without leading and trailing
  // whitespace; both throw a TypeError for what HTTP does not allow. They are Go's: a regular
  // expression costs goja more than the rest of building a Response.
  const headerName = (name) => native.headerName(String(name));
  const headerValue = (value) => native.headerValue(String(value));

  // A Headers keeps, per lower-case name, the list of its values: get() joins them with ", " and
  // iteration yields them joined (except set-cookie, whose values stay separate), as the Fetch
  // standard says; the response sends each value as a header line of its own.
  const checkMutable = (h) => {
    if (h[kGuard] === "immutable") throw new TypeError("Headers are immutable");
  };

  class Headers {
    constructor(init = undefined) {
      this[kList] = new Map();
      this[kGuard] = "none";
      if (init === undefined || init === null) return;
      // Loops here and in other hot paths index arrays and call forEach: goja runs destructuring
      // and for-of, which go through iterators, several times slower.
      if (init instanceof Headers) {
        const list = this[kList];
        init[kList].forEach((vs, k) => list.set(k, vs.slice()));
      } else if (typeof init !== "object" && typeof init !== "function") {
        throw new TypeError(`Headers: init must be an object, an array of pairs or a Headers, not ${describe(init)}`);
      } else if (typeof init[Symbol.iterator] === "function") {
        const pairs = Array.isArray(init) ? init : [...init];
        for (let i = 0; i < pairs.length; i++) {
          const pair = pairs[i];
          if (pair === null || typeof pair !== "object" && typeof pair !== "string") throw new TypeError("Headers: each pair must be an array of a name and a value");
          const p = Array.isArray(pair) ? pair : [...pair];
          if (p.length !== 2) throw new TypeError("Headers: each pair must have exactly two items, a name and a value");
          this.append(p[0], p[1]);
        }
      } else {
        const keys = Object.keys(init);
        for (let i = 0; i < keys.length; i++) this.append(keys[i], init[keys[i]]);
      }
    }
    append(name, value) {
      checkMutable(this);
      name = headerName(name);
      value = headerValue(value);
      const vs = this[kList].get(name);
      if (vs) vs.push(value);
      else this[kList].set(name, [value]);
    }
    delete(name) {
      checkMutable(this);
      this[kList].delete(headerName(name));
    }
    get(name) {
      const vs = this[kList].get(headerName(name));
      return vs === undefined ? null : vs.join(", ");
    }
    getAll(name) {
      name = headerName(name);
      if (name !== "set-cookie") throw new TypeError("Headers.getAll: only set-cookie is supported; use get()");
      return this.getSetCookie();
    }
    getSetCookie() {
      return (this[kList].get("set-cookie") || []).slice();
    }
    has(name) {
      return this[kList].has(headerName(name));
    }
    set(name, value) {
      checkMutable(this);
      this[kList].set(headerName(name), [headerValue(value)]);
    }
    forEach(callback, thisArg = undefined) {
      for (const [k, v] of this) callback.call(thisArg, v, k, this);
    }
    *entries() {
      for (const k of [...this[kList].keys()].sort()) {
        const vs = this[kList].get(k);
        if (vs === undefined) continue;
        if (k === "set-cookie") for (const v of vs) yield [k, v];
        else yield [k, vs.join(", ")];
      }
    }
    *keys() {
      for (const [k] of this.entries()) yield k;
    }
    *values() {
      for (const [, v] of this.entries()) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    get [Symbol.toStringTag]() {
      return "Headers";
    }
  }

  // hostHeaders makes Headers from the flat [name, value, ...] list Go passes, names already
  // lower case and valid.
  const hostHeaders = (flat) => {
    const h = Object.create(Headers.prototype);
    const list = new Map();
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const vs = list.get(flat[i]);
      if (vs) vs.push(flat[i + 1]);
      else list.set(flat[i], [flat[i + 1]]);
    }
    h[kList] = list;
    h[kGuard] = "none";
    return h;
  };

  // ---------------------------------------------------------------- bodies

  // setBody sets the body of r (a Request or Response) from body, given not null, and the
  // content-type header if body implies one and the headers have none. A body is null, a string,
  // or a Uint8Array that nothing else writes to.
  const setBody = (r, body) => {
    let type = null;
    if (typeof body === "string") {
      r[kBody] = body;
      type = "text/plain;charset=UTF-8";
    } else if (body instanceof ArrayBuffer) {
      r[kBody] = new Uint8Array(body.slice(0));
    } else if (ArrayBuffer.isView(body)) {
      r[kBody] = new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
    } else if (body instanceof URLSearchParams) {
      r[kBody] = body.toString();
      type = "application/x-www-form-urlencoded;charset=UTF-8";
    } else if (body instanceof ReadableStream) {
      const owner = body[kOwner];
      if (body.locked || owner[kUsed]) throw new TypeError("the ReadableStream given as a body is locked or was read already");
      owner[kUsed] = true;
      r[kBody] = owner[kBody];
    } else if (typeof body === "object" && (typeof body.getReader === "function" || typeof body.arrayBuffer === "function")) {
      throw new TypeError(`${describe(body)} is not a supported body; Wisp takes a string, ArrayBuffer, typed array, URLSearchParams or the body of another Request or Response`);
    } else {
      r[kBody] = String(body);
      type = "text/plain;charset=UTF-8";
    }
    if (type !== null && !r[kHeaders][kList].has("content-type")) r[kHeaders][kList].set("content-type", [type]);
  };

  const bodyBytes = (b) => (b === null ? new Uint8Array(0) : typeof b === "string" ? utf8Encode(b) : b);
  const bodyText = (b) => (b === null ? "" : typeof b === "string" ? b : utf8Decode(b));

  // A minimal ReadableStream: the body of a Request or Response, read as one chunk. Streams
  // cannot be constructed by user code yet.
  class ReadableStream {
    constructor() {
      throw new TypeError("ReadableStream: constructing streams is not supported in Wisp yet; give Response a string, ArrayBuffer or Uint8Array");
    }
    get locked() {
      return this[kUsed] === true;
    }
    getReader() {
      if (this.locked) throw new TypeError("ReadableStream is locked");
      this[kUsed] = true;
      const owner = this[kOwner];
      let done = false;
      return {
        read: async () => {
          if (done) return { value: undefined, done: true };
          done = true;
          if (owner[kUsed]) throw new TypeError("the body was read already");
          owner[kUsed] = true;
          const bytes = bodyBytes(owner[kBody]);
          return bytes.length ? { value: bytes.slice(), done: false } : { value: undefined, done: true };
        },
        releaseLock: () => {},
        cancel: async () => {
          done = true;
        },
        get closed() {
          return Promise.resolve(undefined);
        },
      };
    }
    [Symbol.asyncIterator]() {
      const reader = this.getReader();
      return { next: () => reader.read(), return: async () => ({ value: undefined, done: true }) };
    }
    async cancel() {
      this[kOwner][kUsed] = true;
    }
  }

  // take marks the body of r used and returns it.
  const take = (r) => {
    if (r[kUsed]) throw new TypeError("Body has already been used; clone() the Request or Response to read it twice");
    r[kUsed] = true;
    return r[kBody];
  };

  class BodyMixin {
    get body() {
      if (this[kBody] === null) return null;
      if (this[kStream] === undefined) {
        const s = Object.create(ReadableStream.prototype);
        s[kOwner] = this;
        this[kStream] = s;
      }
      return this[kStream];
    }
    get bodyUsed() {
      return this[kUsed];
    }
    async text() {
      return bodyText(take(this));
    }
    async json() {
      return JSON.parse(bodyText(take(this)));
    }
    async arrayBuffer() {
      return bodyBytes(take(this)).slice().buffer;
    }
    async bytes() {
      return bodyBytes(take(this)).slice();
    }
    async blob() {
      throw new TypeError("Blob bodies are not supported in Wisp yet; use arrayBuffer() or text()");
    }
    async formData() {
      const type = this.headers.get("content-type") || "";
      if (!type.startsWith("application/x-www-form-urlencoded")) {
        throw new TypeError("formData(): Wisp reads application/x-www-form-urlencoded bodies only; use text() or arrayBuffer()");
      }
      return new URLSearchParams(bodyText(take(this)));
    }
  }

  // ---------------------------------------------------------------- Request

  const methods = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"]);
  const normalizeMethod = (m) => {
    m = String(m);
    if (!native.isToken(m)) throw new TypeError(`Invalid method: "${m}"`);
    const upper = m.toUpperCase();
    if (upper === "CONNECT" || upper === "TRACE" || upper === "TRACK") throw new TypeError(`Forbidden method: "${m}"`);
    return methods.has(upper) ? upper : m;
  };

  class Request extends BodyMixin {
    constructor(input, init = {}) {
      super();
      init = init === null || init === undefined ? {} : init;
      let method = "GET";
      let headers;
      let body = null;
      if (input instanceof Request) {
        this[kURL] = input[kURL];
        method = input[kMethod];
        headers = input.headers;
        if (init.body === undefined && input[kBody] !== null) {
          if (input[kUsed]) throw new TypeError("Request: the input Request's body was read already");
          body = input[kBody];
          input[kUsed] = true;
        }
      } else {
        this[kURL] = new URL(String(input)).href;
      }
      if (init.method !== undefined) method = normalizeMethod(init.method);
      this[kMethod] = method;
      this[kHeaders] = new Headers(init.headers !== undefined ? init.headers : headers);
      this[kBody] = body;
      this[kUsed] = false;
      if (init.body !== undefined && init.body !== null) {
        if (method === "GET" || method === "HEAD") throw new TypeError(`Request with ${method} method cannot have a body`);
        setBody(this, init.body);
      }
    }
    get method() {
      return this[kMethod];
    }
    get url() {
      return this[kURL];
    }
    get headers() {
      if (this[kHeaders] === null) this[kHeaders] = hostHeaders(this[kFlat]);
      return this[kHeaders];
    }
    get redirect() {
      return "follow";
    }
    get cache() {
      return "default";
    }
    get signal() {
      return undefined;
    }
    clone() {
      if (this[kUsed]) throw new TypeError("Request.clone: the body was read already");
      const r = Object.create(Request.prototype);
      r[kURL] = this[kURL];
      r[kMethod] = this[kMethod];
      r[kHeaders] = new Headers(this.headers);
      r[kBody] = this[kBody];
      r[kUsed] = false;
      return r;
    }
    get [Symbol.toStringTag]() {
      return "Request";
    }
  }

  const hostRequest = (method, url, flatHeaders, body) => {
    const r = Object.create(Request.prototype);
    r[kMethod] = method;
    r[kURL] = url;
    r[kHeaders] = null; // made from kFlat on first use: many handlers never look
    r[kFlat] = flatHeaders;
    r[kBody] = body === null ? null : new Uint8Array(body);
    r[kUsed] = false;
    return r;
  };

  // ---------------------------------------------------------------- Response

  const nullBodyStatus = new Set([101, 103, 204, 205, 304]);
  const redirectStatus = new Set([301, 302, 303, 307, 308]);

  class Response extends BodyMixin {
    constructor(body = null, init = {}) {
      super();
      init = init === null || init === undefined ? {} : init;
      const status = init.status === undefined ? 200 : Number(init.status);
      if (!Number.isInteger(status) || status < 200 || status > 599) {
        throw new RangeError(`Response: status ${init.status} is not an integer in 200..599`);
      }
      const statusText = init.statusText === undefined ? "" : String(init.statusText);
      if (statusText !== "" && (statusText.includes("\r") || statusText.includes("\n"))) {
        throw new TypeError("Response: invalid statusText");
      }
      this[kStatus] = status;
      this[kStatusText] = statusText;
      this[kHeaders] = new Headers(init.headers);
      this[kBody] = null;
      this[kUsed] = false;
      if (body !== null && body !== undefined) {
        if (nullBodyStatus.has(status)) throw new TypeError(`Response with status ${status} cannot have a body`);
        setBody(this, body);
      }
    }
    static json(data, init = {}) {
      const text = JSON.stringify(data);
      if (text === undefined) throw new TypeError(`Response.json: ${describe(data)} cannot be serialized as JSON`);
      init = init === null || init === undefined ? {} : init;
      const headers = new Headers(init.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      return new Response(text, { status: init.status, statusText: init.statusText, headers });
    }
    static redirect(url, status = 302) {
      if (!redirectStatus.has(status)) throw new RangeError(`Response.redirect: status ${status} is not a redirect status`);
      const r = new Response(null, { status });
      r.headers.set("location", new URL(String(url)).href);
      r.headers[kGuard] = "immutable";
      return r;
    }
    static error() {
      throw new TypeError("Response.error() is not supported in Wisp; throw an Error or return a 5xx Response");
    }
    get status() {
      return this[kStatus];
    }
    get statusText() {
      return this[kStatusText];
    }
    get ok() {
      return this[kStatus] >= 200 && this[kStatus] <= 299;
    }
    get headers() {
      return this[kHeaders];
    }
    get redirected() {
      return false;
    }
    get type() {
      return "default";
    }
    get url() {
      return this[kURL] === undefined ? "" : this[kURL];
    }
    clone() {
      if (this[kUsed]) throw new TypeError("Response.clone: the body was read already");
      const r = Object.create(Response.prototype);
      r[kStatus] = this[kStatus];
      r[kStatusText] = this[kStatusText];
      r[kHeaders] = new Headers(this[kHeaders]);
      r[kBody] = this[kBody];
      r[kUsed] = false;
      if (this[kURL] !== undefined) r[kURL] = this[kURL];
      return r;
    }
    get [Symbol.toStringTag]() {
      return "Response";
    }
  }

  // ---------------------------------------------------------------- hostcalls

  // calls holds the promise of each hostcall in flight (fetch, KV) under the id Go was given when
  // the call started. Go settles them oldest call first, while the request waits for its
  // handler's promise (engine.go); reset drops those still pending when the response is ready.
  const calls = new Map();
  let lastCall = 0;

  // hostcall starts a call with start(id), which throws if the arguments cannot be sent, and
  // returns a promise of convert(result), or rejected with fail(why) if the call fails.
  const hostcall = (start, convert, fail) => {
    const id = ++lastCall;
    start(id);
    return new Promise((resolve, reject) => calls.set(id, { resolve, reject, convert, fail }));
  };

  // settle settles the promise of call id: with convert(value), or with fail(message) when Go
  // gives the message of the call's error.
  const settle = (id, value, message) => {
    const c = calls.get(id);
    if (c === undefined) return;
    calls.delete(id);
    if (message !== undefined) {
      c.reject(c.fail(message));
      return;
    }
    try {
      c.resolve(c.convert(value));
    } catch (e) {
      c.reject(e);
    }
  };

  // reset forgets the timers and the calls of the request that ended. (Map.clear allocates: most
  // requests leave both empty.)
  const reset = () => {
    if (timers.size > 0) timers.clear();
    if (calls.size > 0) calls.clear();
  };

  // ---------------------------------------------------------------- fetch

  // fetch sends a request through the host (the Go SDK's faas/fetch): the host follows
  // redirects, applies the function's allow-list and its timeout, and hands the whole response
  // over at once. Requests are sent when fetch is called, so those started before an await run
  // concurrently.
  const fetch = async (input, init = undefined) => {
    if (input === undefined) throw new TypeError("fetch: a URL or a Request is required: fetch(url, init)");
    if (init !== undefined && init !== null && init.redirect !== undefined && init.redirect !== "follow") {
      throw new TypeError(`fetch: redirect "${init.redirect}" is not supported; Wisp's host follows redirects ("follow")`);
    }
    const req = new Request(input, init);
    const url = req[kURL];
    const method = req[kMethod];
    if (!url.startsWith("http:") && !url.startsWith("https:")) {
      throw new TypeError(`fetch: cannot fetch ${url}: only http and https URLs can be fetched`);
    }
    const flat = [];
    req.headers[kList].forEach((vs, k) => {
      for (let i = 0; i < vs.length; i++) flat.push(k, vs[i]);
    });
    const b = req[kBody];
    return hostcall(
      (id) =>
        b === null || typeof b === "string"
          ? native.fetch(id, method, url, flat, b)
          : native.fetch(id, method, url, flat, b.buffer, b.byteOffset, b.byteLength),
      (res) => fetched(method, url, res[0], res[1], res[2]),
      (why) => new TypeError(`fetch ${url}: ${why}`),
    );
  };

  // fetched makes the Response of a fetch from what Go gives: the status, the flat header list
  // (names in lower case) and the body's ArrayBuffer, which the Response keeps without a copy.
  // Its headers are immutable, as in Workers: new Response(res.body, res) makes a mutable copy.
  const fetched = (method, url, status, flat, body) => {
    const r = Object.create(Response.prototype);
    r[kStatus] = status;
    r[kStatusText] = "";
    r[kHeaders] = hostHeaders(flat);
    r[kHeaders][kGuard] = "immutable";
    r[kBody] = method === "HEAD" || nullBodyStatus.has(status) ? null : new Uint8Array(body);
    r[kUsed] = false;
    r[kURL] = url;
    return r;
  };

  // ---------------------------------------------------------------- KV

  // The function's KV namespace (the Go SDK's faas/kv), shaped after Workers KV. Keys are
  // checked by the host: 1 to 512 bytes of letters, digits and "-/_=.".
  const kvKey = (what, key) => {
    if (typeof key !== "string") throw new TypeError(`KV ${what}: the key must be a string, not ${describe(key)}`);
    if (key === "") throw new TypeError(`KV ${what}: the key must not be empty`);
  };
  const kvFail = (what, key) => (why) => new Error(`KV ${what} "${key}": ${why}`);
  const kvText = (buf) => utf8Decode(new Uint8Array(buf));
  const kvConvert = new Map([
    ["text", (buf) => (buf === null ? null : kvText(buf))],
    ["json", (buf) => (buf === null ? null : JSON.parse(kvText(buf)))],
    ["arrayBuffer", (buf) => buf],
  ]);
  const kvSeconds = (what, name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new TypeError(`KV ${what}: ${name} must be a positive number of seconds, not ${v}`);
    return n;
  };
  const undefinedResult = () => undefined;

  class KVNamespace {
    // get returns a promise of key's value, or of null if the key does not exist; type (or
    // options.type) is "text" (the default), "json" or "arrayBuffer".
    async get(key, options = undefined) {
      kvKey("get", key);
      const type = typeof options === "string" ? options : options !== undefined && options !== null && options.type !== undefined ? options.type : "text";
      const convert = kvConvert.get(type);
      if (convert === undefined) {
        throw new TypeError(`KV get: type ${type === "stream" ? '"stream" is not supported in Wisp' : `${JSON.stringify(type)} is unknown`}; use "text", "json" or "arrayBuffer"`);
      }
      return hostcall((id) => native.kvGet(id, key), convert, kvFail("get", key));
    }
    // getWithMetadata is get with the shape Workers gives it; Wisp keeps no metadata.
    async getWithMetadata(key, options = undefined) {
      const value = await this.get(key, options);
      return { value, metadata: null, cacheStatus: null };
    }
    // put writes key: value a string, an ArrayBuffer or a typed array; options.expirationTtl
    // (seconds from now, at least 1) or options.expiration (seconds since the epoch) makes it
    // expire.
    async put(key, value, options = undefined) {
      kvKey("put", key);
      let ttl = 0;
      if (options !== undefined && options !== null) {
        if (options.metadata !== undefined && options.metadata !== null) throw new TypeError("KV put: metadata is not supported in Wisp");
        if (options.expirationTtl !== undefined) ttl = Math.round(kvSeconds("put", "expirationTtl", options.expirationTtl) * 1000);
        else if (options.expiration !== undefined) {
          ttl = Math.round(kvSeconds("put", "expiration", options.expiration) * 1000 - Date.now());
          if (ttl <= 0) throw new TypeError(`KV put: expiration ${options.expiration} is in the past`);
        }
      }
      let start;
      if (typeof value === "string") {
        start = (id) => native.kvPut(id, key, value, 0, 0, ttl);
      } else if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
        const u8 = asBytes(value, "KV put");
        start = (id) => native.kvPut(id, key, u8.buffer, u8.byteOffset, u8.byteLength, ttl);
      } else {
        throw new TypeError(`KV put: the value must be a string, an ArrayBuffer or a typed array, not ${describe(value)}`);
      }
      return hostcall(start, undefinedResult, kvFail("put", key));
    }
    // delete deletes key; deleting a key that does not exist succeeds.
    async delete(key) {
      kvKey("delete", key);
      return hostcall((id) => native.kvDelete(id, key), undefinedResult, kvFail("delete", key));
    }
    // list returns a promise of { keys: [{ name }], list_complete }: the keys starting with
    // options.prefix, sorted, at most options.limit of them (1000 by default). There is no
    // cursor: list_complete false says more keys have the prefix.
    async list(options = undefined) {
      let prefix = "";
      let limit = 0;
      if (options !== undefined && options !== null) {
        if (options.cursor !== undefined && options.cursor !== null && options.cursor !== "") {
          throw new TypeError("KV list: cursor is not supported in Wisp; narrow the prefix instead");
        }
        if (options.prefix !== undefined && options.prefix !== null) {
          if (typeof options.prefix !== "string") throw new TypeError(`KV list: prefix must be a string, not ${describe(options.prefix)}`);
          prefix = options.prefix;
        }
        if (options.limit !== undefined) {
          limit = Number(options.limit);
          if (!Number.isInteger(limit) || limit < 1) throw new TypeError(`KV list: limit must be a positive integer, not ${options.limit}`);
        }
      }
      return hostcall(
        (id) => native.kvList(id, prefix, limit),
        (res) => ({ keys: res[0].map((name) => ({ name })), list_complete: !res[1], cacheStatus: null }),
        kvFail("list", prefix),
      );
    }
    get [Symbol.toStringTag]() {
      return "KVNamespace";
    }
  }

  // ---------------------------------------------------------------- handlers

  let handler = null;
  const listeners = [];

  const run = (fn) => {
    if (typeof fn !== "function") {
      throw new TypeError(`run(handler): the handler must be a function (request, env, ctx) => Response, not ${describe(fn)}`);
    }
    if (handler !== null) throw new TypeError("run(handler) was called twice; a function has one handler");
    if (listeners.length) throw new TypeError('run(handler) and addEventListener("fetch", ...) cannot be mixed; use one of them');
    handler = fn;
  };

  const addEventListener = (type, listener) => {
    if (type !== "fetch") {
      throw new TypeError(`addEventListener: Wisp dispatches "fetch" events only, not "${type}"`);
    }
    if (typeof listener !== "function" && !(listener && typeof listener.handleEvent === "function")) {
      throw new TypeError('addEventListener("fetch", listener): listener must be a function');
    }
    if (handler !== null) throw new TypeError('run(handler) and addEventListener("fetch", ...) cannot be mixed; use one of them');
    listeners.push(listener);
  };

  const removeEventListener = (type, listener) => {
    const i = listeners.indexOf(listener);
    if (type === "fetch" && i >= 0) listeners.splice(i, 1);
  };

  const kResponse = Symbol("response");

  // ExecutionContext is the handler's ctx. Nothing runs after the response is sent (engine.go),
  // so waitUntil only reports the rejection of a promise that settles before; a fetch or KV call
  // still in flight then is abandoned.
  class ExecutionContext {
    waitUntil(promise) {
      Promise.resolve(promise).catch((e) => err("Uncaught (in waitUntil)", e));
    }
    passThroughOnException() {}
  }

  class FetchEvent extends ExecutionContext {
    constructor(type, init) {
      super();
      if (!init || !(init.request instanceof Request)) throw new TypeError("FetchEvent: init.request must be a Request");
      this.type = String(type);
      this.request = init.request;
      this[kResponse] = undefined;
    }
    respondWith(response) {
      if (this[kResponse] !== undefined) throw new DOMException("respondWith() was already called", "InvalidStateError");
      this[kResponse] = Promise.resolve(response);
    }
  }

  // env holds the function's environment variables and its KV namespace, as KV.
  native.env.KV = new KVNamespace();
  const env = Object.freeze(native.env);

  // dispatch returns the handler's result for one request: a Response or a promise of one.
  const dispatch = (request) => {
    if (handler !== null) return handler(request, env, new ExecutionContext());
    const event = new FetchEvent("fetch", { request });
    for (let i = 0; i < listeners.length; i++) {
      const l = listeners[i];
      if (typeof l === "function") l.call(globalThis, event);
      else l.handleEvent(event);
      if (event[kResponse] !== undefined) return event[kResponse];
    }
    throw new Error('no "fetch" listener called event.respondWith()');
  };

  // respond hands res to Go: native.respond(status, [name, value, ...], body) with body a string
  // or null, or (status, headers, ArrayBuffer, offset, length); or native.fail(error) when res is
  // not a Response that can be sent.
  const respond = (res) => {
    if (!(res instanceof Response)) {
      const hint = res === undefined ? " (does the handler return its Response?)" : "";
      native.fail(new TypeError(`the handler returned ${describe(res)}, not a Response${hint}`));
      return;
    }
    if (res[kUsed]) {
      native.fail(new TypeError("the handler returned a Response whose body was read already"));
      return;
    }
    res[kUsed] = true;
    const flat = [];
    res[kHeaders][kList].forEach((vs, k) => {
      for (let i = 0; i < vs.length; i++) flat.push(k, vs[i]);
    });
    const b = res[kBody];
    if (b === null || typeof b === "string") native.respond(res[kStatus], flat, b);
    else native.respond(res[kStatus], flat, b.buffer, b.byteOffset, b.byteLength);
  };

  // serve starts serving one request. A handler that returns a promise gets it returned, for Go
  // to wait for and then pass to respond; for any other result serve calls respond itself and
  // returns undefined. What the handler throws propagates. (Chaining respond to the promise
  // here would cost goja more than a second call from Go.)
  const serve = (method, url, flatHeaders, body) => {
    const res = dispatch(hostRequest(method, url, flatHeaders, body));
    if (res instanceof Promise) return res;
    respond(res);
    return undefined;
  };

  const registered = () => handler !== null || listeners.length > 0;

  const globals = {
    self: globalThis,
    DOMException, TextEncoder, TextDecoder, btoa, atob, console, crypto, performance,
    setTimeout, setInterval, clearTimeout, clearInterval: clearTimeout, queueMicrotask,
    URL, URLSearchParams, Headers, Request, Response, ReadableStream, FetchEvent, fetch,
    run, addEventListener, removeEventListener,
  };
  for (const name of Object.keys(globals)) defineGlobal(name, globals[name]);

  return { serve, respond, registered, nextTimer, runTimers, settle, reset };
})
