// CableSocket: a WebSocket-compatible class backed by the Go sdk, for
// @rails/actioncable's adapters.WebSocket. The JS client always sees
// actioncable-v1-json; the wire may speak MessagePack.
import { dropEarly, load, newId, preopen, sentEarly } from './loader.js'

const JSON_PROTOCOL = 'actioncable-v1-json'
const MSGPACK_PROTOCOL = 'actioncable-v1-msgpack'

/** A minimal event target: on<type> handlers first, then listeners. */
export class Emitter {
  #listeners = new Map()

  addEventListener(type, listener, options) {
    if (!listener) return
    let list = this.#listeners.get(type)
    if (!list) this.#listeners.set(type, (list = []))
    if (list.some((l) => l.listener === listener)) return
    list.push({ listener, once: typeof options === 'object' && !!options?.once })
  }

  removeEventListener(type, listener) {
    const list = this.#listeners.get(type)
    const i = list ? list.findIndex((l) => l.listener === listener) : -1
    if (i >= 0) list.splice(i, 1)
  }

  dispatchEvent(event) {
    this._emit(event.type, event)
    return true
  }

  // _emit calls the handlers of type with event (a plain object: creating
  // DOM Events per frame would cost more than the frame).
  _emit(type, event) {
    event.target ??= this
    event.currentTarget = this
    const handler = this[`on${type}`]
    if (typeof handler === 'function') handler.call(this, event)
    const list = this.#listeners.get(type)
    if (!list?.length) return
    for (const l of [...list]) {
      if (l.once) this.removeEventListener(type, l.listener)
      if (typeof l.listener === 'function') l.listener.call(this, event)
      else l.listener.handleEvent(event)
    }
  }
}

/**
 * connectionOptions normalises the options of a socket or consumer for Go:
 * the bridge URL resolved (against the page's URL; ws: → http:), and
 * transports as an array.
 */
export function connectionOptions(options = {}) {
  const o = { ...options }
  if (o.bridge !== undefined && o.bridge !== null) {
    let b = String(o.bridge)
    try {
      b = new URL(b, globalThis.location?.href).href
    } catch {} // Go reports the bad URL when it uses it
    o.bridge = b.replace(/^ws(s?):/i, 'http$1:').replace(/\/+$/, '')
  }
  if (typeof o.transports === 'string') o.transports = [o.transports]
  else if (o.transports) o.transports = [...o.transports].map(String)
  return o
}

const CONNECTING = 0
const OPEN = 1
const CLOSING = 2
const CLOSED = 3

export class CableSocket extends Emitter {
  // Static fields are enumerable: @rails/actioncable finds the state names
  // with `for (state in adapters.WebSocket)`. Keep no other static fields.
  static CONNECTING = CONNECTING
  static OPEN = OPEN
  static CLOSING = CLOSING
  static CLOSED = CLOSED

  /**
   * @param {string|URL} url ws://, wss://, http:// or https:// URL of the cable
   * @param {string|string[]} [protocols] subprotocols the client offers
   * @param {object} [options] { msgpack, bridge, transports, maxFrameBytes, … } (see index.d.ts)
   */
  constructor(url, protocols = [], options = {}) {
    super()
    this.url = String(url).replace(/^http(s?):/i, 'ws$1:')
    this.readyState = CONNECTING
    this.protocol = ''
    this.extensions = ''
    this.bufferedAmount = 0
    this.binaryType = 'blob'
    /** The transport carrying the socket: 'websocket', 'sse' or 'longpoll'; '' until known. */
    this.transport = ''
    this.onopen = this.onmessage = this.onclose = this.onerror = this.ontransportchange = null
    this._id = newId()
    this._rt = null
    this._protocols = typeof protocols === 'string' ? [protocols] : [...(protocols ?? [])]
    this._options = connectionOptions(options)
    if (typeof options?.ontransportchange === 'function') this.addEventListener('transportchange', options.ontransportchange)
    this._close = null // [code, reason] of a close() made before Go had the socket
    this._ws = null // the WebSocket to send on directly (see _direct)
    this._early = null // frames that came directly before the open record
    try {
      this._origin = new URL(this.url).origin
    } catch {
      this._origin = ''
    }
    // On one WebSocket, the handshake need not wait for the instance: the
    // socket Go will ask for opens now (see preopen in loader.js).
    // Once it is open, the socket is open: see _earlyOpen.
    const o = this._options
    this._queued = null // commands for Go, sent once Go has the socket (see send)
    this._goOpen = false // Go has reported the socket open
    if (!o.bridge && (o.transports ?? [o.transport ?? 'websocket']).join() === 'websocket') {
      const limit = Math.min(EARLY_FRAME_BYTES, o.maxFrameBytes > 0 ? o.maxFrameBytes : Infinity)
      preopen(this._id, this.url, wireOffer(this._protocols, o.msgpack === true), this, limit)
    }
    load().then(
      (rt) => this._start(rt),
      (err) => this._fail(err),
    )
  }

  _start(rt) {
    if (this.readyState === CLOSED) return dropEarly(this._id) // an early socket that closed before Go had it
    if (this._ws && this._close) return // an early socket closing: its close event closes this (_earlyClosed)
    if (this._close) return this._closed(1006, 'cableway: closed before the connection opened', false) // closed while loading
    this._rt = rt
    rt.targets.set(this._id, this)
    try {
      rt.call('socketOpen', this._id, this.url, this._protocols, this._options)
    } catch (err) {
      this._died(err)
    } finally {
      dropEarly(this._id) // Go opened something else, if it did not adopt it
    }
  }

  // _fail: the Go instance could not be loaded. The close reason says why
  // (a browser's 1006 has none, which leaves the page guessing).
  _fail(err) {
    dropEarly(this._id)
    if (this.readyState === CLOSED) return
    if (this._close) return this._closed(1006, 'cableway: closed before the connection opened', false)
    const message = String(err?.message ?? err)
    this._emit('error', { type: 'error', error: err, message })
    this._closed(1006, message, false)
  }

  // _earlyOpen is called by the loader (preopen) when the socket's early
  // WebSocket opened before the instance runs. On a wire JS reads as it
  // comes (not MessagePack) the socket opens now, as Go would show it: its
  // frames come to _frame, plain commands go on ws (see send), and Go,
  // once it runs, adopts ws without another open event. Returns whether
  // it took the socket.
  _earlyOpen(ws) {
    const p = ws.protocol ?? ''
    if (this.readyState !== CONNECTING || p === MSGPACK_PROTOCOL) return false
    this._ws = ws
    this.transport = 'websocket'
    this.protocol = p === '' ? JSON_PROTOCOL : p // as Go shows it (a JSON wire; any other as it is)
    this.readyState = OPEN
    this._emit('open', { type: 'open' })
    return true
  }

  // _earlyClosed: the early WebSocket this socket took (_earlyOpen) closed
  // before Go adopted it.
  _earlyClosed(e) {
    this._closed(e.code, e.reason ?? '', !!e.wasClean)
  }

  // _direct is called by the loader's wire (js/loader.js) when the socket
  // is one WebSocket whose frames JavaScript reads as they come: commands
  // that Go would send as they are then go straight to ws, and the wire
  // hands the frames it receives to _frame, without a crossing into Go.
  _direct(ws) {
    this._ws = ws
  }

  // _frame is a text frame from the wire. It may come before Go's open
  // record (the open event went to Go, the frame did not): it waits for it.
  _frame(data) {
    if (this.readyState === OPEN) this._emit('message', { type: 'message', data, origin: this._origin })
    else if (this.readyState === CONNECTING) (this._early ??= []).push(data)
  }

  // _record handles a record from Go (see wasm/outbox.go).
  _record(kind, payload) {
    switch (kind) {
      case 'm':
        if (this.readyState === OPEN) this._emit('message', { type: 'message', data: payload, origin: this._origin })
        break
      case 'n':
        this.transport = payload
        break
      case 'w': {
        const { from, to, upgrade, reason } = JSON.parse(payload)
        this.transport = to
        this._emit('transportchange', { type: 'transportchange', from, to, upgrade, reason })
        break
      }
      case 'o':
        this._goOpen = true
        if (this._queued) {
          const queued = this._queued
          this._queued = null
          for (const data of queued) this._sendGo(data, true)
        }
        if (this.readyState !== CONNECTING) break // opened early (_earlyOpen), or close() was called: Go closes it
        this.readyState = OPEN
        this.protocol = payload
        this._emit('open', { type: 'open' })
        if (this._early) {
          const early = this._early
          this._early = null
          for (const data of early) this._frame(data)
        }
        break
      case 'e':
        this._emit('error', { type: 'error', message: payload, error: new Error(payload) })
        break
      case 'x': {
        const [code, clean, ...reason] = payload.split(',')
        this._closed(+code, reason.join(','), clean === '1')
        break
      }
    }
  }

  _closed(code, reason, wasClean) {
    if (this.readyState === CLOSED) return
    this._rt?.targets.delete(this._id)
    this.readyState = CLOSED
    this._emit('close', { type: 'close', code, reason, wasClean })
  }

  // _died: the Go instance ended under an open socket.
  _died(err) {
    if (this.readyState === CLOSED) return
    this._emit('error', { type: 'error', error: err, message: err?.message })
    this._closed(1006, 'cableway: the Go instance exited', false)
  }

  /** Sends one ActionCable command, given as JSON text. */
  send(data) {
    if (this.readyState === CONNECTING) throw new DOMException('cableway: socket is still connecting', 'InvalidStateError')
    if (this.readyState !== OPEN) return // as browsers do: dropped
    if (this._ws && !this._queued && plainCommand(data)) {
      if (!this._rt) sentEarly(this._id)
      return this._ws.send(data)
    }
    if (!this._goOpen) { // opened early: Go takes commands once it has the socket
      ;(this._queued ??= []).push(String(data))
      return
    }
    this._sendGo(data, false)
  }

  // _sendGo sends data through Go, which normalises it or says why it
  // refuses it: by throwing, or with an error event for a command queued
  // before Go had the socket.
  _sendGo(data, queued) {
    let err
    try {
      err = this._rt.call('socketSend', this._id, String(data))
    } catch (e) {
      return this._died(e)
    }
    if (!err) return
    if (queued) this._emit('error', { type: 'error', message: err, error: new SyntaxError(err) })
    else throw new SyntaxError(err)
  }

  /**
   * Closes the socket. While it is still connecting this does not fail:
   * the socket is CLOSING until its dial settles, then CLOSED with a close
   * event (see rails/rails#43835).
   */
  close(code, reason = '') {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new DOMException(`cableway: invalid close code ${code}`, 'InvalidAccessError')
    }
    if (this.readyState === CLOSING || this.readyState === CLOSED) return
    const early = this._ws && !this._rt // opened early, Go not running yet
    this.readyState = CLOSING
    this._close = [code, String(reason)]
    if (early) return closeWebSocket(this._ws, code, String(reason)) // its close event closes this (_earlyClosed)
    if (!this._rt) return dropEarly(this._id) // still loading: _start reports the close
    try {
      this._rt.call('socketClose', this._id, code ?? null, String(reason))
    } catch (err) {
      this._died(err)
    }
  }
}

// EARLY_FRAME_BYTES bounds the frames an early socket (_earlyOpen) hands
// on before Go runs (with the maxFrameBytes option, if smaller): well
// under Go's default read limit (1 MiB), so that a frame Go would refuse
// is never delivered; larger ones wait for Go, which applies its limit.
const EARLY_FRAME_BYTES = 64 * 1024

// closeWebSocket closes ws with code and reason, as Wire.close does:
// browsers refuse codes other than 1000 and 3000–4999.
function closeWebSocket(ws, code, reason) {
  try {
    ws.close(code, reason)
  } catch {
    ws.close()
  }
}

// wireOffer returns the subprotocols Go offers on the wire for a socket
// whose JS client offered protocols (wasm/socket.go, socketOpen says why).
function wireOffer(protocols, msgpack) {
  const offer = msgpack ? [MSGPACK_PROTOCOL] : []
  if (protocols.length > 0) {
    offer.push(JSON_PROTOCOL)
    for (const p of protocols) if (p !== JSON_PROTOCOL && p !== MSGPACK_PROTOCOL) offer.push(String(p))
  } else if (msgpack) offer.push(JSON_PROTOCOL)
  return offer
}

// plainCommand tells whether data is an ActionCable command that Go would
// send as it is, give or take JSON spelling: an object with a known
// command, a non-empty string identifier, string data where Go writes it,
// and nothing else. Anything else goes through Go, which normalises it or
// says why it refuses it.
function plainCommand(data) {
  if (typeof data !== 'string') return false
  let c
  try {
    c = JSON.parse(data)
  } catch {
    return false
  }
  if (c === null || typeof c !== 'object' || Array.isArray(c)) return false
  for (const key in c) if (key !== 'command' && key !== 'identifier' && key !== 'data') return false
  if (typeof c.identifier !== 'string' || c.identifier === '') return false
  switch (c.command) {
    case 'message':
      return typeof c.data === 'string'
    case 'subscribe':
    case 'unsubscribe':
      return c.data === undefined || (typeof c.data === 'string' && c.data !== '')
  }
  return false
}

for (const [name, value] of Object.entries({ CONNECTING, OPEN, CLOSING, CLOSED })) {
  Object.defineProperty(CableSocket.prototype, name, { value, enumerable: false })
}

/**
 * Returns a CableSocket class with options bound, for libraries that call
 * `new WebSocket(url, protocols)` themselves.
 */
export function cableSocketWith(options = {}) {
  return class extends CableSocket {
    constructor(url, protocols) {
      super(url, protocols, options)
    }
  }
}

/**
 * Installs CableSocket into an @rails/actioncable module object:
 * `adapters.WebSocket` (Rails ≥ 6) or `WebSocket` (Rails 5). Returns the
 * installed class.
 */
export function install(ActionCable, options = {}) {
  const { wasmURL, wasmModule, WebSocket, origin, headers, ...socketOptions } = options
  load({ wasmURL, wasmModule, WebSocket, origin, headers }).catch(() => {}) // start early; sockets report failures
  const cls = cableSocketWith(socketOptions)
  if (ActionCable?.adapters && 'WebSocket' in ActionCable.adapters) ActionCable.adapters.WebSocket = cls
  else if (ActionCable && 'WebSocket' in ActionCable) ActionCable.WebSocket = cls
  else throw new TypeError('cableway: install() needs the @rails/actioncable module (with adapters.WebSocket or WebSocket)')
  return cls
}
