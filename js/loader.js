// The loader starts the Go WebAssembly instance (wasm/ in this repository)
// and carries everything that crosses between it and JavaScript.
//
// Crossings are avoided or batched, since each costs far more than a frame:
// - A CableSocket on one WebSocket with a JSON wire crosses into Go only
//   to open and close: Wire hands its text frames to it directly, and it
//   sends on the WebSocket itself (see Wire.open).
// - Sockets: Wire (below) is the JS hook of the sdk's WebSocket transport
//   (sdk/transport/websocket, SetJSHook): it queues the events of every
//   socket in one buffer and hands it to Go in one call per task
//   (wireDeliver); the call returns what Go made of it.
// - Everything else Go reports (consumer events and messages, promise
//   results) goes to one outbox; the first record calls notify(), and a
//   macrotask later takes the whole outbox (take) as one string.
// Records are `<kind><id>\x1f<payload>` joined by \x1e (see wasm/outbox.go);
// neither byte can occur in JSON text. No exported Go function blocks.
//
// When the instance exits (a Go panic ends it too), every live object is
// told (sockets get error + close, consumers an error and a reconnect), and
// the next use starts a fresh instance from the compiled module.

const config = {
  wasmURL: undefined, // default: the hashed file ./dist/wasm.js names
  wasmModule: undefined, // a WebAssembly.Module, or a promise of one, compiled by the page
  WebSocket: undefined,
  origin: undefined,
  headers: undefined,
}

let module // Promise<WebAssembly.Module>, compiled once
let current // Promise<Runtime> of the live instance
let bootSeq = 0
let nextId = 1

/** Allocates an id for a JS object that Go reports about. */
export const newId = () => nextId++

const isNode = typeof process === 'object' && typeof process.versions?.node === 'string'

/**
 * Merges options into the configuration without starting anything: the
 * options of load(), for the next instance (a running one keeps its
 * WebSocket class). cableway/node calls it to hand in `ws`.
 */
export function configure(options = {}) {
  for (const key of Object.keys(config)) {
    if (options[key] !== undefined) config[key] = options[key]
  }
}

/**
 * Configures and starts the WebAssembly instance; resolves when it runs.
 * Later calls merge their options and return the running instance.
 */
export function load(options = {}) {
  configure(options)
  if (!current || current.runtime?.dead) {
    const p = (current = start())
    p.then((rt) => { p.runtime = rt }, () => { if (current === p) current = undefined }) // the next use tries again
  }
  return current
}

const notBuilt = 'a packed cableway ships it; from a checkout, run `npm run build` first'

// wasmURL resolves to where the .wasm is: the wasmURL option, or the
// content-hashed file of the package, which js/dist/wasm.js (written by
// js/build.mjs with it) names.
async function wasmURL() {
  if (config.wasmURL !== undefined) {
    const u = config.wasmURL
    return u instanceof URL ? u : new URL(String(u), globalThis.location?.href ?? import.meta.url)
  }
  let built
  try {
    built = await import('./dist/wasm.js')
  } catch (err) {
    const file = new URL('./dist/wasm.js', import.meta.url)
    throw new Error(`cableway: cannot load ${file.protocol === 'file:' ? file.pathname : file}, which names the WebAssembly module: ${err.message} (${notBuilt}, or pass wasmURL)`, { cause: err })
  }
  if (!(built.wasmURL instanceof URL)) throw new Error('cableway: dist/wasm.js does not export wasmURL')
  return built.wasmURL
}

// compile fetches (or reads) and compiles the .wasm. Every failure rejects
// with an error that names the file and what to do.
async function compile() {
  const url = await wasmURL()
  await handshakesDone() // the fetch too: reading 5 MB, even from the HTTP cache, slows the page's thread
  let bytes
  if (url.protocol === 'file:' && isNode) {
    const { readFile } = await import('node:fs/promises')
    try {
      bytes = await readFile(url)
    } catch (err) {
      throw new Error(`cableway: cannot read the WebAssembly module ${url.pathname}: ${err.code ?? err.message} (${notBuilt}, or pass wasmURL)`, { cause: err })
    }
  } else {
    let resp
    try {
      resp = await fetch(url)
    } catch (err) {
      throw new Error(`cableway: cannot fetch the WebAssembly module ${url}: ${err.message} (serve the package's js/dist/ files there, or pass wasmURL)`, { cause: err })
    }
    if (!resp.ok) throw new Error(`cableway: fetching the WebAssembly module ${url} failed with HTTP ${resp.status} (serve the package's js/dist/ files there, or pass wasmURL)`)
    if (WebAssembly.compileStreaming && resp.headers.get('content-type')?.startsWith('application/wasm')) {
      try {
        return await WebAssembly.compileStreaming(resp)
      } catch (err) {
        throw new Error(`cableway: ${url} is not a valid WebAssembly module: ${err.message}`, { cause: err })
      }
    }
    bytes = await resp.arrayBuffer() // a server without the wasm MIME type
  }
  try {
    return await WebAssembly.compile(bytes)
  } catch (err) {
    throw new Error(`cableway: ${url} is not a valid WebAssembly module: ${err.message}`, { cause: err })
  }
}

// goRuntime imports wasm_exec.js (Go's JavaScript support, from the same
// toolchain as the .wasm), which defines globalThis.Go.
async function goRuntime() {
  if (globalThis.Go) return
  try {
    await import('./dist/wasm_exec.js')
  } catch (err) {
    const file = new URL('./dist/wasm_exec.js', import.meta.url)
    throw new Error(`cableway: cannot load Go's WebAssembly runtime ${file.protocol === 'file:' ? file.pathname : file}: ${err.message} (${notBuilt})`, { cause: err })
  }
  if (typeof globalThis.Go !== 'function') throw new Error('cableway: dist/wasm_exec.js did not define globalThis.Go')
}

// originFor derives the Origin that Rails checks from a cable URL, as the Go
// sdk does natively: ws://host → http://host, wss://host → https://host.
function originFor(url) {
  try {
    const u = new URL(url)
    return `${u.protocol === 'wss:' || u.protocol === 'https:' ? 'https:' : 'http:'}//${u.host}`
  } catch {
    return undefined
  }
}

// webSocketClass returns the WebSocket the wire dials with: the one handed
// to load() (the `ws` package under Node 20), wrapped so that it sends the
// Origin Rails requires (and any headers) as a browser would, or the
// global one. globalThis is left alone.
function webSocketClass() {
  const WS = config.WebSocket
  if (WS) {
    if (WS.__cablewayWrapped) return WS
    const wrapped = class extends WS {
      constructor(url, protocols) {
        super(url, protocols, { origin: config.origin ?? originFor(url), headers: config.headers })
      }
    }
    wrapped.__cablewayWrapped = true
    return (config.WebSocket = wrapped)
  }
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket
  throw new Error("cableway: no WebSocket here; pass one: load({ WebSocket: (await import('ws')).WebSocket })")
}

// given takes the module the page compiled (the wasmModule option), once:
// if it fails, the next start compiles from wasmURL itself.
async function given() {
  const m = config.wasmModule
  config.wasmModule = undefined
  let compiled
  try {
    compiled = await m
  } catch (err) {
    throw new Error(`cableway: the page's WebAssembly module (the wasmModule option) failed: ${err?.message ?? err}`, { cause: err })
  }
  if (!(compiled instanceof WebAssembly.Module)) throw new TypeError('cableway: the wasmModule option must be a WebAssembly.Module or a promise of one')
  return compiled
}

async function start() {
  const WS = webSocketClass()
  if (!module) {
    module = config.wasmModule !== undefined ? given() : compile()
    module.catch(() => { module = undefined })
  }
  // Go's runtime loads while the module compiles, not before.
  const [compiled] = await Promise.all([module, goRuntime()])
  await handshakesDone()
  await startHold
  const go = new globalThis.Go()
  let hasExited = false
  const instance = await WebAssembly.instantiate(compiled, quietAfterExit(go.importObject, () => hasExited))
  // Go's main calls this with its exported functions and gets back the
  // JS functions it calls: notify() and the Wire (the WebSocket hook).
  const key = `__cablewayBoot${bootSeq++}`
  let rt
  globalThis[key] = (api) => {
    rt = new Runtime(api, WS, go)
    return { notify: () => rt.schedule(), wire: rt.wire }
  }
  go.argv = ['cableway', key]
  const died = (err) => rt?.die(err ?? new Error('cableway: the Go instance exited'))
  // Only wasm_exec.js's public surface is used: argv, exit, importObject
  // and run. Its exit hook tells that the program ended.
  go.exit = (code) => {
    hasExited = true
    if (rt) rt.exited = true
    if (code !== 0) console.warn(`cableway: the Go instance exited with code ${code}`)
    queueMicrotask(() => died())
  }
  const exited = go.run(instance) // runs main until it waits; boot is called by then
  delete globalThis[key]
  exited.then(() => died(), died)
  if (!rt) throw new Error('cableway: the Go instance exited while starting')
  return rt
}

// quietAfterExit returns imports whose Go timers do nothing once the
// program has exited: wasm_exec.js leaves them armed, and one that fires
// then throws from a timer (an uncaught exception, fatal under Node). It
// wraps the import the Go runtime schedules its timers with
// (runtime.scheduleTimeoutEvent, part of the ABI between the runtime and
// wasm_exec.js), handing it a setTimeout whose callbacks first ask
// whether the program still runs; the handles it returns are setTimeout's,
// so clearTimeoutEvent still clears them.
function quietAfterExit(importObject, hasExited) {
  const gojs = importObject.gojs
  const schedule = gojs?.['runtime.scheduleTimeoutEvent']
  if (typeof schedule !== 'function') return importObject
  const setTimeoutOnce = globalThis.setTimeout
  const guarded = (fn, ms, ...args) => setTimeoutOnce(() => { if (!hasExited()) fn(...args) }, ms)
  return {
    ...importObject,
    gojs: {
      ...gojs,
      'runtime.scheduleTimeoutEvent': (sp) => {
        const saved = globalThis.setTimeout
        globalThis.setTimeout = guarded
        try {
          schedule(sp)
        } finally {
          globalThis.setTimeout = saved
        }
      },
    },
  }
}

// Macrotask scheduling: later than the message events already queued, so a
// burst of frames is taken as one batch. Node: setImmediate (after pending
// I/O callbacks); browsers: a MessageChannel (no timer clamping).
const nextTask = (() => {
  if (typeof setImmediate === 'function') return setImmediate
  if (typeof MessageChannel === 'function') {
    const ch = new MessageChannel()
    const queue = []
    ch.port1.onmessage = () => queue.shift()()
    return (fn) => { queue.push(fn); ch.port2.postMessage(0) }
  }
  return (fn) => setTimeout(fn, 0)
})()

const report = globalThis.reportError ?? ((err) => setTimeout(() => { throw err }))

const CLOSING = 2 // WebSocket.CLOSING

// The instance's start waits for the handshakes of early sockets: V8
// compiles (or, on a return visit, deserialises its cached code for) the
// module partly on the page's thread, and instantiating it and starting Go
// run there too: a hundred milliseconds or more in which an early socket's
// welcome and confirmation would wait. An early socket is in its handshake
// (in `handshaking`) from preopen until a frame arrives, and again from
// each command sent on it directly until the next frame, until Go adopts it
// or it closes. handshakesDone resolves once none is, a task after the
// page's code that made them has run, and in HANDSHAKE_WAIT_MS at most.
const HANDSHAKE_WAIT_MS = 1000
const handshaking = new Set()
let handshakeWaiters = []

function handshakesDone() {
  return new Promise((resolve) => {
    nextTask(() => {
      if (handshaking.size === 0) return resolve()
      const timer = setTimeout(done, HANDSHAKE_WAIT_MS)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      handshakeWaiters.push(done)
    })
  })
}

// handshakeStep marks pre as in its handshake (waiting) or not; the
// waiters are released a task later, if none is by then (a frame's
// handler may send the next command).
function handshakeStep(pre, waiting) {
  if (waiting) return handshaking.add(pre)
  if (!handshaking.delete(pre) || handshaking.size > 0) return
  nextTask(() => {
    if (handshaking.size > 0) return
    const waiters = handshakeWaiters
    handshakeWaiters = []
    for (const f of waiters) f()
  })
}

/** Marks the early socket of owner as waiting for an answer to a command it sent directly. */
export function sentEarly(owner) {
  const pre = early.get(owner)
  if (pre) handshakeStep(pre, true)
}

// Sockets opened before the instance runs (preopen), by the id of their
// CableSocket, until the wire adopts them or they are dropped: {ws, url,
// protocols, events, socket, limit, direct, held}, events being what Go
// must be shown of the socket when it adopts it.
const early = new Map()

/**
 * Opens the WebSocket of CableSocket `owner` now, if no instance runs yet,
 * so that its handshake overlaps the instance's start: the wire adopts it
 * when Go opens the socket with the same url and protocols (Wire.open).
 * The caller drops it (dropEarly) if Go opens something else, or when the
 * CableSocket closes or fails before. Returns whether it opened one.
 *
 * Until Go adopts it, the socket need not wait for the instance: once it
 * opens, socket._earlyOpen(ws) may take it (on a wire JS reads as it
 * comes); from then on its text frames of at most limit bytes go straight
 * to socket._frame and its close to socket._earlyClosed, as the wire
 * would route them. The first frame that might exceed limit, or a binary
 * one, is held for Go with everything after it, in order (Go applies its
 * read limit to them). Go is shown the open (to finish its dial) and the
 * held events only.
 */
export function preopen(owner, url, protocols, socket, limit = 0) {
  if (current?.runtime && !current.runtime.dead) return false
  let ws
  try {
    ws = new (webSocketClass())(url, protocols)
  } catch {
    return false // Go's dial says why
  }
  ws.binaryType = 'arraybuffer'
  const pre = { ws, url, protocols, events: [], socket, limit, direct: false, held: false }
  ws.onopen = (e) => {
    pre.events.push(['open', e])
    pre.direct = !!socket?._earlyOpen(ws)
  }
  ws.onmessage = (e) => {
    handshakeStep(pre, false)
    if (pre.direct && !pre.held && typeof e.data === 'string' && e.data.length * 3 <= pre.limit) return socket._frame(e.data)
    pre.held = true
    pre.events.push(['message', e])
  }
  ws.onclose = (e) => {
    handshakeStep(pre, false)
    if (pre.direct && (!pre.held || socket.readyState === CLOSING)) {
      early.delete(owner)
      return socket._earlyClosed(e)
    }
    pre.events.push(['close', e])
  }
  ws.onerror = () => {}
  early.set(owner, pre)
  handshakeStep(pre, true)
  return true
}

/** Closes the early socket of owner, unless the wire adopted it. */
export function dropEarly(owner) {
  const pre = early.get(owner)
  if (!pre) return
  early.delete(owner)
  closeEarly(pre)
}

function closeEarly(pre) {
  handshakeStep(pre, false)
  pre.ws.onopen = pre.ws.onmessage = pre.ws.onclose = null
  try {
    pre.ws.close()
  } catch {}
}

function sameList(a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Runtime is one running Go instance. */
export class Runtime {
  constructor(api, WS, go) {
    this.api = api
    this.go = go
    this.targets = new Map() // id → object with _record(kind, payload) and _died(err)
    this.dead = false
    this.exited = false // set by start's exit hook
    this.scheduled = false
    this.flush = this.flush.bind(this)
    this.wire = new Wire(this, WS)
  }

  /** Calls an exported Go function; a dead instance throws. */
  call(name, ...args) {
    if (this.exited) this.die(new Error('cableway: the Go instance exited'))
    if (this.dead) throw new Error('cableway: the Go instance has exited')
    try {
      return this.api[name](...args)
    } finally {
      if (this.exited) this.die(new Error('cableway: the Go instance exited'))
    }
  }

  schedule() {
    if (this.wire.delivering) this.wire.notified = true // flushed when Go returns
    else if (!this.scheduled) {
      this.scheduled = true
      nextTask(this.flush)
    }
  }

  flush() {
    this.scheduled = false
    if (this.dead) return
    let batch
    try {
      batch = this.call('take')
    } catch (err) {
      if (!this.dead) throw err
      return // died: its objects were told
    }
    this.dispatch(batch)
  }

  dispatch(batch) {
    if (!batch) return
    for (const rec of batch.split('\x1e')) {
      const sep = rec.indexOf('\x1f')
      const target = this.targets.get(+rec.slice(1, sep))
      if (target) {
        try {
          target._record(rec[0], rec.slice(sep + 1))
        } catch (err) {
          report(err) // a throwing callback must not lose the rest of the batch
        }
      }
    }
  }

  /** Returns [id, promise]: the promise settles on a `p` record for id. */
  promise() {
    const id = newId()
    let settle
    const p = new Promise((resolve, reject) => {
      settle = (err) => (err ? reject(err) : resolve())
    })
    this.targets.set(id, {
      _record: (_, payload) => {
        this.targets.delete(id)
        settle(payload ? new Error(payload) : undefined)
      },
      _died: settle,
    })
    return [id, p]
  }

  die(err) {
    if (this.dead) return
    this.dead = true
    this.wire.closeAll()
    const targets = [...this.targets.values()]
    this.targets.clear()
    for (const t of targets) {
      try {
        t._died(err)
      } catch (e) {
        report(e)
      }
    }
  }
}

let startHold // a promise the next instance's start waits on (holdStart)

/**
 * Makes the next instance's start wait, before instantiating, until p
 * settles: what a page sees while the module still loads. A test hook:
 * the package root does not export it.
 */
export function holdStart(p) {
  startHold = p
}

/**
 * Ends the running instance as a Go panic would. A test hook: the package
 * root does not export it (tests import it from this file).
 */
export async function crash() {
  const rt = await load()
  rt.call('crash')
}

const encoder = new TextEncoder()
const K_OPEN = 0x6f, K_TEXT = 0x74, K_BINARY = 0x62, K_CLOSED = 0x78 // o t b x

/**
 * Wire is the JS hook of the sdk's WebSocket transport under GOOS=js (its
 * contract: SetJSHook in sdk/transport/websocket/dial_js.go). Go calls
 * open/send/close; the events of all sockets are queued here as records
 * (kind u8, id u32 LE, length u32 LE, payload) in one buffer, and handed to
 * Go (wireDeliver → websocket.DeliverJS) in one call per task, so a burst
 * of frames enters Go once.
 */
class Wire {
  constructor(rt, WS) {
    this.rt = rt
    this.WS = WS
    this.sockets = new Map()
    this.buf = new Uint8Array(1 << 16)
    this.view = new DataView(this.buf.buffer)
    this.len = 0
    this.scheduled = false
    this.delivering = false
    this.lastArrival = -Infinity
    this.deliver = this.deliver.bind(this)
    // Go calls these (the hook contract): plain functions, no `this` needed.
    //
    // open's direct ({tag, readLimit}, or undefined) is set for a drop-in
    // socket on one WebSocket (wasm/socket.go): tag {socket, convert}
    // names the CableSocket and the subprotocols whose frames Go must
    // convert. On any other subprotocol the text frames go straight to the
    // CableSocket (_frame) in the message event, and it sends on the
    // WebSocket itself (given by _direct): no crossing into Go per frame. The first
    // frame that might exceed the read limit, or a binary one, goes to Go
    // as usual, and so does every later frame (their order is kept): Go
    // applies the limit and reports what it makes of them.
    //
    // A socket opened early (preopen) for the CableSocket direct's tag
    // names, with the same url and protocols, is adopted instead of opening
    // another: the events it had are replayed first, in order.
    this.open = (id, url, protocols, direct) => {
      const owner = direct?.tag?.socket
      const pre = owner !== undefined ? early.get(owner) : undefined
      let ws
      if (pre) {
        early.delete(owner)
        handshakeStep(pre, false)
        if (pre.url === url && sameList(pre.protocols, protocols)) ws = pre.ws
        else closeEarly(pre)
      }
      if (!ws) {
        ws = new this.WS(url, protocols)
        ws.binaryType = 'arraybuffer'
      }
      this.sockets.set(id, ws)
      let target = null // the CableSocket frames go to, while they go directly
      const limit = direct?.readLimit ?? 0
      ws.onopen = () => {
        const protocol = ws.protocol ?? ''
        const t = direct && this.rt.targets.get(direct.tag?.socket)
        if (t?._direct && !direct.tag.convert?.includes(protocol)) {
          target = t
          t._direct(ws)
        }
        this.push(K_OPEN, id, encoder.encode(protocol))
      }
      ws.onmessage = (e) => {
        if (target) {
          if (typeof e.data === 'string' && e.data.length * 3 <= limit) return target._frame(e.data)
          target = null // from here on through Go, in order
        }
        if (typeof e.data === 'string') this.pushText(id, e.data)
        else this.push(K_BINARY, id, new Uint8Array(e.data))
      }
      ws.onclose = (e) => {
        this.sockets.delete(id)
        const reason = encoder.encode(e.reason ?? '')
        const p = new Uint8Array(3 + reason.length)
        p[0] = e.code & 0xff
        p[1] = e.code >> 8
        p[2] = e.wasClean ? 1 : 0
        p.set(reason, 3)
        this.push(K_CLOSED, id, p)
      }
      ws.onerror = () => {} // a close event follows
      if (ws === pre?.ws) {
        for (const [type, e] of pre.events) {
          if (this.sockets.get(id) !== ws) break // closed by a replayed event
          ws[`on${type}`](e)
        }
      }
    }
    this.send = (id, data) => this.sockets.get(id)?.send(data)
    // Go forgets the id once it has called close: its events are not
    // reported any more.
    this.close = (id, code, reason) => {
      const ws = this.sockets.get(id)
      if (!ws) return
      this.sockets.delete(id)
      ws.onopen = ws.onmessage = ws.onclose = null
      try {
        ws.close(code, reason)
      } catch {
        ws.close() // browsers refuse codes other than 1000 and 3000–4999 (1009)
      }
    }
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.len + n))
    grown.set(this.buf.subarray(0, this.len))
    this.buf = grown
    this.view = new DataView(grown.buffer)
  }

  header(kind, id, n) {
    this.buf[this.len] = kind
    this.view.setUint32(this.len + 1, id, true)
    this.view.setUint32(this.len + 5, n, true)
  }

  push(kind, id, bytes) {
    this.reserve(9 + bytes.length)
    this.header(kind, id, bytes.length)
    this.buf.set(bytes, this.len + 9)
    this.len += 9 + bytes.length
    this.schedule()
  }

  pushText(id, text) {
    this.reserve(9 + text.length * 3) // UTF-8 is at most 3 bytes per UTF-16 unit
    const { written } = encoder.encodeInto(text, this.buf.subarray(this.len + 9))
    this.header(K_TEXT, id, written)
    this.len += 9 + written
    this.schedule()
  }

  // schedule arranges a delivery: in a microtask (at once) when the
  // previous frame came a while ago, so a sparse stream pays no latency; in
  // a macrotask when frames follow each other closely, so that a burst
  // gathers into one batch instead of entering Go frame by frame.
  schedule() {
    const now = performance.now()
    const close = now - this.lastArrival < 0.25
    this.lastArrival = now
    if (this.scheduled) return
    this.scheduled = true
    if (close) nextTask(this.deliver)
    else queueMicrotask(this.deliver)
  }

  // deliver hands the queued events to Go, then takes what Go made of them
  // at once rather than in another task.
  deliver() {
    this.scheduled = false
    if (this.rt.dead || this.len === 0) return
    const batch = this.buf.subarray(0, this.len)
    this.len = 0
    this.delivering = true
    this.notified = false
    let records
    try {
      records = this.rt.call('wireDeliver', batch)
    } catch (err) {
      if (!this.rt.dead) throw err
      return // died: its objects were told
    } finally {
      this.delivering = false
    }
    if (this.buf.length > 1 << 22) { // do not keep a burst's buffer
      this.buf = new Uint8Array(1 << 16)
      this.view = new DataView(this.buf.buffer)
    }
    this.rt.dispatch(records)
    if (this.notified) this.rt.flush() // goroutines woken by the batch added more
  }

  closeAll() {
    for (const ws of this.sockets.values()) {
      try {
        ws.close()
      } catch {}
    }
    this.sockets.clear()
  }
}
