// cableway/node: the entry for Node ≥ 20 and Electron's main process.
//
//   import 'cableway/node'                          // first: before @rails/actioncable
//   import * as ActionCable from '@rails/actioncable'
//   import { install } from 'cableway/node'         // the same exports as 'cableway'
//   install(ActionCable)
//
// Importing it, synchronously and before anything else runs:
// - hands the `ws` package's WebSocket to cableway (Node 20 has no global
//   WebSocket; globalThis.WebSocket is left alone);
// - defines the browser globals @rails/actioncable reads when it is
//   imported and when it connects, where they are missing: `self`,
//   `addEventListener`/`removeEventListener`, and a `document` that is always
//   visible, has no <meta name="action-cable-url"> and resolves URLs as an
//   <a> element does (against http://localhost/). Globals already defined
//   (a browser, Electron renderers, a DOM emulation) are kept.
import { createRequire } from 'node:module'
import { configure } from './loader.js'

const require = createRequire(import.meta.url)
let ws
try {
  ws = require('ws')
} catch (err) {
  throw new Error("cableway/node needs the `ws` package: npm install ws", { cause: err })
}
configure({ WebSocket: ws.WebSocket ?? ws })

const noop = () => {}
globalThis.self ??= globalThis
globalThis.addEventListener ??= noop
globalThis.removeEventListener ??= noop
globalThis.document ??= {
  visibilityState: 'visible',
  hidden: false,
  addEventListener: noop,
  removeEventListener: noop,
  head: { querySelector: () => null },
  // ActionCable resolves a non-ws: URL with an <a>: href in, protocol
  // rewritten (http → ws), href out.
  createElement() {
    let url = new URL('http://localhost/')
    return {
      get href() { return url.href },
      set href(v) { url = new URL(String(v), url) },
      get protocol() { return url.protocol },
      set protocol(v) {
        // WHATWG URL refuses to switch between special schemes it treats
        // differently; http(s) ↔ ws(s) are allowed.
        url.protocol = v
      },
    }
  },
}

export * from './index.js'
export const WebSocket = ws.WebSocket ?? ws
