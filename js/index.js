// cableway: an ActionCable client in Go/WebAssembly for JavaScript.
//
//   import * as ActionCable from '@rails/actioncable'
//   import { install } from 'cableway'
//   install(ActionCable)            // ActionCable.adapters.WebSocket = CableSocket
//
// or the whole consumer: createConsumer(url).subscriptions.create(...).
// Under Node (and Electron's main process) import 'cableway/node' first.
import { Consumer } from './consumer.js'
import { load as start } from './loader.js'

export { CableSocket, cableSocketWith, install } from './socket.js'
export { Consumer, Subscription, Subscriptions } from './consumer.js'
export { configure } from './loader.js'

/**
 * Configures and starts (once) the WebAssembly instance; resolves, with
 * nothing, when it runs. Later calls merge their options.
 */
export function load(options) {
  return start(options).then(() => {})
}

/**
 * Creates a consumer for the cable at url (ws(s):// or http(s)://), as
 * @rails/actioncable's createConsumer does. `consumer.ready` resolves at the
 * first welcomed connection and rejects when the consumer cannot run at all
 * (the WebAssembly runtime did not load: a missing or broken .wasm, no
 * WebSocket class) or stops before it connected (e.g. unauthorized, or
 * disconnect()). Either is also an `error` event; a runtime that did not
 * load is printed with console.error when nothing observes `ready` or sets
 * `onerror`, so that it never passes silently.
 */
export function createConsumer(url, options) {
  const consumer = new Consumer(url, options)
  let observed = false
  let settled = false
  let resolve, reject
  const ready = new Promise((res, rej) => { resolve = res; reject = rej })
  ready.catch(() => {}) // not an unhandled rejection: reported below instead
  const fail = (error, loud) => {
    if (settled) return
    settled = true
    reject(error)
    if (loud && !observed && typeof consumer.onerror !== 'function') console.error(error)
  }
  consumer.addEventListener('connected', () => { settled ||= (resolve(), true) })
  let lastError
  consumer.addEventListener('error', ({ error }) => { lastError = error })
  consumer.addEventListener('stopped', () => fail(lastError ?? new Error('cableway: the consumer stopped before it connected')))
  start().catch((error) => fail(error, true))
  Object.defineProperty(consumer, 'ready', {
    get() {
      observed = true
      return ready
    },
  })
  return consumer
}
