// The main-process half of the Electron example, kept free of Electron so
// that it runs (and is tested) under plain Node: a cableway consumer that
// follows a chat room and reports to a callback (in Electron: the window).
//
// Under Node 20 (and Electron's main process) there is no global
// WebSocket: hand cableway the `ws` package.
import { WebSocket } from 'ws'
import { createConsumer, load } from '../../js/index.js'

/**
 * Joins `room` on the cable at url. report(kind, data) is called with
 * 'status' ({connected}), 'message' (a broadcast) and 'error' ({message}).
 * Returns {speak(text), close()}.
 */
export function startChat({ url, room, report }) {
  load({ WebSocket })
  const consumer = createConsumer(url)
  consumer.addEventListener('error', (e) => report('error', { message: e.message, reason: e.reason }))
  const chat = consumer.subscriptions.create({ channel: 'ChatChannel', room }, {
    connected: () => report('status', { connected: true }),
    disconnected: () => report('status', { connected: false }),
    received: (data) => report('message', data),
  })
  return {
    speak: (text) => chat.perform('speak', { text }),
    close: () => consumer.disconnect(),
  }
}
