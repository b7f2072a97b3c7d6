// A minimal ActionCable peer for benchmarks: welcome, confirm every
// subscribe, and two actions: "echo" (answers with its data at once) and
// "flood" (sends `count` pre-encoded frames as fast as the socket takes
// them). It speaks actioncable-v1-json only, like Rails.
import { WebSocketServer } from 'ws'

const welcome = '{"type":"welcome"}'

export function startFeed() {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (protocols) => (protocols.has('actioncable-v1-json') ? 'actioncable-v1-json' : false),
  })
  wss.on('connection', (ws) => {
    ws.send(welcome)
    ws.on('message', (raw) => {
      const cmd = JSON.parse(raw)
      const id = JSON.stringify(cmd.identifier)
      if (cmd.command === 'subscribe') return ws.send(`{"identifier":${id},"type":"confirm_subscription"}`)
      if (cmd.command !== 'message') return
      const data = JSON.parse(cmd.data)
      if (data.action === 'echo') return ws.send(`{"identifier":${id},"message":${cmd.data}}`)
      if (data.action === 'flood') flood(ws, id, data.count)
    })
  })
  return new Promise((resolve) => {
    wss.on('listening', () => resolve({ url: `ws://127.0.0.1:${wss.address().port}/cable`, close: () => closeAll(wss) }))
  })
}

async function flood(ws, id, count) {
  // Pre-encoded: the feeder should cost as little as possible per frame.
  const frames = Array.from({ length: 1000 }, (_, i) => `{"identifier":${id},"message":{"n":${i},"text":"hello from the feed","at":1700000000}}`)
  // Corking puts 64 frames in one TCP write: the feeder and the kernel
  // then cost little next to the client under test (ws exposes no public
  // way to batch writes; _socket is its net.Socket).
  const sock = ws._socket
  for (let i = 0; i < count; i++) {
    if (i % 64 === 0) sock.cork()
    ws.send(frames[i % 1000])
    if (i % 64 === 63) sock.uncork()
    if (i % 256 === 255) {
      while (ws.bufferedAmount > 1 << 20) await new Promise((r) => setTimeout(r, 1))
    }
  }
  sock.uncork()
  ws.send(`{"identifier":${id},"message":{"done":${count}}}`)
}

function closeAll(wss) {
  for (const c of wss.clients) c.terminate()
  return new Promise((r) => wss.close(r))
}
