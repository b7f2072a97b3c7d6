// Type declarations for the cableway npm package (js/index.js).

/** A transport: a WebSocket straight to the cable URL, or Server-Sent Events or long-polling through the bridge. */
export type TransportName = 'websocket' | 'sse' | 'longpoll'

/**
 * A connection moved between transports: a fallback while connecting
 * (`upgrade: false`; `reason` says why the better transports failed), or an
 * upgrade by the background probe (`upgrade: true`, `reason: 'upgrade'`).
 */
export interface TransportChangeEvent {
  type: 'transportchange'
  from: TransportName
  to: TransportName
  upgrade: boolean
  reason: string
}

/** Options of a connection made by cableway (CableSocket or Consumer). */
export interface ConnectionOptions {
  /** Offer actioncable-v1-msgpack before JSON on the wire (default false). JS still sees JSON. Over SSE and long-poll the wire is JSON. */
  msgpack?: boolean
  /**
   * The Cableway bridge's base URL (`cableway bridge`, e.g. 'https://app.example.com/cable-bridge';
   * relative URLs resolve against the page). With it, the transports default to
   * ['websocket', 'sse', 'longpoll']: the WebSocket goes straight to the cable URL, SSE and
   * long-polling through the bridge, which must list the page's origin in --allowed-origins
   * when it is cross-origin. The cable URL's query (`?token=…`) is passed on to Rails.
   */
  bridge?: string | URL
  /**
   * The transports to try, best first (default ['websocket'], or all three with `bridge`). A
   * refused one gives way at once, one that hangs after `headStartMs`; the first to be welcomed
   * wins. 'sse' and 'longpoll' need `bridge`. Without 'websocket' no upgrade is tried.
   */
  transports?: TransportName[] | TransportName
  /** One transport; the same as `transports: [transport]`. */
  transport?: TransportName
  /** How long a transport may hang before the next one races it (default 800). */
  headStartMs?: number
  /** How often a connection on SSE or long-poll tries to move back up to a WebSocket through the bridge (default 30000; negative: never). */
  probeIntervalMs?: number
  /** Largest frame accepted, in bytes (default 1 MiB); a larger one closes the connection with 1009. */
  maxFrameBytes?: number
  /** Consumer only: drop a connection that sent nothing (not even a ping) for this long (default 6000). */
  staleTimeoutMs?: number
}

/** Options of the CableSocket classes made by install() and cableSocketWith(). */
export interface SocketClassOptions extends ConnectionOptions {
  /** Added as a `transportchange` listener to every socket of the class. */
  ontransportchange?: (event: TransportChangeEvent & { target: CableSocket }) => void
}

/** Options of the WebAssembly instance. */
export interface LoadOptions {
  /** Where the WebAssembly module is served (default: the package's content-hashed js/dist/cableway.<hash>.wasm, named by js/dist/wasm.js). */
  wasmURL?: string | URL
  /**
   * The WebAssembly module, or a promise of it, compiled by the page: e.g.
   * `WebAssembly.compileStreaming(fetch('…/cableway.<hash>.wasm'))`. Used
   * once: if it fails, `load()` rejects saying so, and the next use
   * compiles from `wasmURL`. Without it the loader fetches the module once
   * the first sockets' handshakes are done (they do not wait for it; see
   * js/README.md, Starting fast).
   */
  wasmModule?: WebAssembly.Module | PromiseLike<WebAssembly.Module>
  /**
   * A WebSocket class for where none is global (Node 20: the `ws` package).
   * It is used by cableway only; globalThis is not changed.
   */
  WebSocket?: new (url: string, protocols?: string | string[], options?: unknown) => unknown
  /** Origin sent by a handed-in WebSocket (default: derived from the cable URL, http(s)://host). */
  origin?: string
  /** Extra handshake headers sent by a handed-in WebSocket (e.g. Cookie under Node). */
  headers?: Record<string, string>
}

/** Starts (once) the WebAssembly instance; later calls merge their options. Resolves when it runs. */
export function load(options?: LoadOptions): Promise<void>

/**
 * Merges options into the configuration without starting the instance
 * (cableway/node hands in `ws` with it). load() takes the same options.
 */
export function configure(options?: LoadOptions): void

export interface CableSocketEventMap {
  open: { type: 'open'; target: CableSocket }
  message: { type: 'message'; data: string; origin: string; target: CableSocket }
  error: { type: 'error'; message?: string; error?: unknown; target: CableSocket }
  close: { type: 'close'; code: number; reason: string; wasClean: boolean; target: CableSocket }
  transportchange: TransportChangeEvent & { target: CableSocket }
}

type Listener<E> = ((event: E) => void) | { handleEvent(event: E): void }

/**
 * A WebSocket-compatible socket backed by the Go sdk, for
 * `ActionCable.adapters.WebSocket`. It always shows actioncable-v1-json
 * frames (text) to JavaScript, whatever the wire speaks.
 */
export class CableSocket {
  static readonly CONNECTING: 0
  static readonly OPEN: 1
  static readonly CLOSING: 2
  static readonly CLOSED: 3
  readonly CONNECTING: 0
  readonly OPEN: 1
  readonly CLOSING: 2
  readonly CLOSED: 3

  constructor(url: string | URL, protocols?: string | string[], options?: SocketClassOptions)

  readonly url: string
  /** The transport carrying the socket; '' until it is known (at open, or at a transportchange before it). */
  readonly transport: TransportName | ''
  ontransportchange: ((event: CableSocketEventMap['transportchange']) => void) | null
  readonly readyState: 0 | 1 | 2 | 3
  readonly protocol: string
  readonly extensions: string
  readonly bufferedAmount: number
  binaryType: string

  onopen: ((event: CableSocketEventMap['open']) => void) | null
  onmessage: ((event: CableSocketEventMap['message']) => void) | null
  onerror: ((event: CableSocketEventMap['error']) => void) | null
  onclose: ((event: CableSocketEventMap['close']) => void) | null

  addEventListener<K extends keyof CableSocketEventMap>(type: K, listener: Listener<CableSocketEventMap[K]>, options?: { once?: boolean } | boolean): void
  removeEventListener<K extends keyof CableSocketEventMap>(type: K, listener: Listener<CableSocketEventMap[K]>): void
  dispatchEvent(event: { type: string }): boolean

  /** Sends one ActionCable command as JSON text; throws InvalidStateError while connecting, SyntaxError if it is not a command. */
  send(data: string): void
  /** Closes the socket; while connecting, it ends CLOSED with a close event once the dial settles. */
  close(code?: number, reason?: string): void
}

/** A CableSocket class with options bound, for code that calls `new WebSocket(url, protocols)`. */
export function cableSocketWith(options?: SocketClassOptions): typeof CableSocket

/** The @rails/actioncable module object (Rails ≥ 6) or a Rails 5-style ActionCable object. */
export type ActionCableModule = { adapters: { WebSocket: unknown } } | { WebSocket: unknown }

/**
 * Sets `ActionCable.adapters.WebSocket` (or `ActionCable.WebSocket`) to a
 * CableSocket class with these options, starts loading the WebAssembly, and
 * returns the class.
 */
export function install(ActionCable: ActionCableModule, options?: SocketClassOptions & LoadOptions): typeof CableSocket

/** Channel params: a channel name, or an object with `channel` and params (key order is kept). */
export type ChannelParams = string | ({ channel: string } & Record<string, unknown>)

/** Callbacks of a subscription, shaped like @rails/actioncable's mixin. */
export interface SubscriptionMixin {
  connected?(this: Subscription, info: { reconnected: boolean }): void
  disconnected?(this: Subscription, info: { willAttemptReconnect: boolean }): void
  rejected?(this: Subscription): void
  received?(this: Subscription, data: unknown): void
  [method: string]: unknown
}

export class Subscription {
  readonly consumer: Consumer
  /** The identifier sent to the server: JSON.stringify(params). */
  readonly identifier: string
  /** Calls the channel's action; resolves once sent, rejects (sending nothing) while not confirmed and connected. */
  perform(action: string, data?: Record<string, unknown>): Promise<void>
  /** Sends data as the command's data: Rails calls the channel method its `action` names, or the channel's `receive` when it names none. */
  send(data: Record<string, unknown>): Promise<void>
  unsubscribe(): void
}

export class Subscriptions {
  readonly consumer: Consumer
  readonly subscriptions: Subscription[]
  create<M extends SubscriptionMixin>(channel: ChannelParams, mixin?: M): Subscription & M
  remove(subscription: Subscription): void
}

export interface ConsumerEventMap {
  connected: { type: 'connected'; reconnected: boolean; transport: TransportName }
  transportchange: TransportChangeEvent
  disconnected: { type: 'disconnected'; willAttemptReconnect: boolean; error?: Error }
  /** reason: the server's disconnect reason ("unauthorized", …), or "instance_exited". */
  error: { type: 'error'; error: Error; message: string; reason?: string }
  stopped: { type: 'stopped' }
}

/**
 * A connection run by the Go sdk's cable.Consumer: it reconnects with
 * backoff, detects stale connections and resubscribes on its own.
 */
export class Consumer {
  constructor(url: string | URL, options?: ConnectionOptions)
  readonly url: string
  readonly subscriptions: Subscriptions
  /** Whether a welcomed connection is up. */
  readonly connected: boolean
  /** The transport of the current (or last) connection; '' before the first. */
  readonly transport: TransportName | ''
  /** Reopens the consumer after disconnect(); subscriptions are made again. */
  connect(): void
  /** Closes the connection; resolves once the Go consumer has stopped. */
  disconnect(): Promise<void>
  addEventListener<K extends keyof ConsumerEventMap>(type: K, listener: Listener<ConsumerEventMap[K] & { target: Consumer }>, options?: { once?: boolean } | boolean): void
  removeEventListener<K extends keyof ConsumerEventMap>(type: K, listener: Listener<ConsumerEventMap[K] & { target: Consumer }>): void
}

/**
 * Creates a consumer for the cable at url (ws(s):// or http(s)://).
 * `ready` resolves at the first welcomed connection; it rejects when the
 * WebAssembly runtime cannot load (a missing .wasm or wasm_exec.js, no
 * WebSocket class) or the consumer stops before it connected (e.g.
 * unauthorized, or disconnect()). A runtime that did not load is also an
 * `error` event, and is printed with console.error when neither `ready` nor
 * `onerror` is used.
 */
export function createConsumer(url: string | URL, options?: ConnectionOptions): Consumer & { readonly ready: Promise<void> }
