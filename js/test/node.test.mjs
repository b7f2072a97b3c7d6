// Node 20 + the `ws` package against the example Rails app: the consumer
// API, CableSocket under the official client (6.1 and 8.x), and what
// happens when the Go instance dies.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'
import { WebSocket, WebSocketServer } from 'ws'
import { browserGlobals, Events, startRails } from './helpers.mjs'
import { pack, unpack } from './msgpack.mjs'

browserGlobals() // before the official clients load: they read self.WebSocket
const require = createRequire(import.meta.url)
const cableway = await import('../index.js')
// The test hook is the loader's, not the package's.
const { crash, holdStart } = await import('../loader.js')
cableway.load({ WebSocket })

let rails
before(async () => { rails = await startRails() })
after(() => rails?.stop())

const url = (user) => (user ? `${rails.ws}?token=secret-${user}` : rails.ws)

// mixin records a subscription's callbacks as events {key, kind, data}.
function mixin(ev, key) {
  return {
    connected: (data) => ev.push({ key, kind: 'connected', data }),
    disconnected: (data) => ev.push({ key, kind: 'disconnected', data }),
    rejected: () => ev.push({ key, kind: 'rejected' }),
    received: (data) => ev.push({ key, kind: 'received', data }),
  }
}
const is = (key, kind, pred = () => true) => (e) => e.key === key && e.kind === kind && pred(e.data)

describe('consumer API', () => {
  test('subscribe, echo and broadcasts', async () => {
    const ev = new Events()
    const c = cableway.createConsumer(url('alice'))
    try {
      const echo = c.subscriptions.create({ channel: 'EchoChannel', tag: 'x', n: 1 }, mixin(ev, 'echo'))
      const chat = c.subscriptions.create({ channel: 'ChatChannel', room: 'node-api' }, mixin(ev, 'chat'))
      // EchoChannel transmits its params (in the order sent) before confirming.
      assert.deepEqual((await ev.next(is('echo', 'received'))).data, { params: { tag: 'x', n: 1 } })
      await ev.next(is('echo', 'connected'), 10000, 'echo confirmed')
      await ev.next(is('chat', 'connected'), 10000, 'chat confirmed')
      assert.equal(c.connected, true)

      await echo.perform('echo', { text: 'héllo ✓', list: [1, 2] })
      assert.deepEqual((await ev.next(is('echo', 'received'))).data, { text: 'héllo ✓', list: [1, 2], user: 'alice' })

      await rails.post('/broadcast', { stream: 'chat:node-api', messages: [{ n: 1 }, { n: 2 }] })
      const got = [(await ev.next(is('chat', 'received'))).data, (await ev.next(is('chat', 'received'))).data]
      assert.deepEqual(got.sort((a, b) => a.n - b.n), [{ n: 1 }, { n: 2 }])

      await chat.perform('speak', { text: 'hi all' })
      assert.deepEqual((await ev.next(is('chat', 'received'))).data, { user: 'alice', text: 'hi all', room: 'node-api' })

      chat.unsubscribe()
      await assert.rejects(chat.perform('speak', { text: 'gone' }), /not connected/)
    } finally {
      await c.disconnect()
    }
  })

  test('rejection', async () => {
    const ev = new Events()
    const c = cableway.createConsumer(url('bob'))
    try {
      c.subscriptions.create({ channel: 'RejectChannel' }, mixin(ev, 'r'))
      await ev.next(is('r', 'rejected'), 10000, 'rejected')
      assert.equal(c.subscriptions.subscriptions.length, 0)
    } finally {
      await c.disconnect()
    }
  })

  test('unauthorized: an error event, no reconnect', async () => {
    const ev = new Events()
    const c = cableway.createConsumer(url())
    c.addEventListener('error', (e) => ev.push({ key: 'c', kind: 'error', data: e }))
    c.addEventListener('stopped', () => ev.push({ key: 'c', kind: 'stopped' }))
    const e = await ev.next(is('c', 'error'), 10000, 'unauthorized error')
    assert.equal(e.data.reason, 'unauthorized')
    await ev.next(is('c', 'stopped'))
    assert.equal(c.connected, false)
  })

  test('Rails restart: disconnected, then resubscribed', async () => {
    const ev = new Events()
    const c = cableway.createConsumer(url('carol'))
    c.addEventListener('disconnected', (e) => ev.push({ key: 'c', kind: 'disconnected', data: e }))
    c.addEventListener('connected', (e) => ev.push({ key: 'c', kind: 'connected', data: e }))
    try {
      c.subscriptions.create({ channel: 'ChatChannel', room: 'node-restart' }, mixin(ev, 'chat'))
      await ev.next(is('chat', 'connected'), 10000, 'confirmed')
      await rails.post('/restart')
      assert.equal((await ev.next(is('c', 'disconnected'))).data.willAttemptReconnect, true)
      assert.deepEqual((await ev.next(is('chat', 'disconnected'))).data, { willAttemptReconnect: true })
      await ev.next(is('c', 'connected', (d) => d.reconnected), 15000, 'reconnected')
      await ev.next(is('chat', 'connected', (d) => d.reconnected), 15000, 'resubscribed')
      await rails.post('/broadcast', { stream: 'chat:node-restart', message: { after: 'restart' } })
      assert.deepEqual((await ev.next(is('chat', 'received'))).data, { after: 'restart' })
    } finally {
      await c.disconnect()
    }
  })
})

// The official client with the drop-in socket; restart last (it drops
// every connection of the server).
const clients = [
  ['8.x', require('@rails/actioncable')],
  ['6.1', require('actioncable61')],
]
for (const [version, ActionCable] of clients) {
  describe(`@rails/actioncable ${version} with CableSocket`, () => {
    before(() => cableway.install(ActionCable))

    test('subscribe, perform, broadcasts, rejection', async () => {
      const ev = new Events()
      const c = ActionCable.createConsumer(url('dave'))
      try {
        const echo = c.subscriptions.create({ channel: 'EchoChannel', v: version }, mixin(ev, 'echo'))
        c.subscriptions.create({ channel: 'ChatChannel', room: `ac-${version}` }, mixin(ev, 'chat'))
        c.subscriptions.create({ channel: 'RejectChannel' }, mixin(ev, 'rej'))
        assert.deepEqual((await ev.next(is('echo', 'received'))).data, { params: { v: version } })
        await ev.next(is('echo', 'connected'))
        await ev.next(is('chat', 'connected'))
        await ev.next(is('rej', 'rejected'))
        assert.equal(c.connection.getProtocol(), 'actioncable-v1-json')
        assert.equal(c.connection.getState(), 'open')

        assert.equal(echo.perform('echo', { x: 1 }), true)
        assert.deepEqual((await ev.next(is('echo', 'received'))).data, { x: 1, user: 'dave' })
        await rails.post('/broadcast', { stream: `chat:ac-${version}`, message: { hello: version } })
        assert.deepEqual((await ev.next(is('chat', 'received'))).data, { hello: version })
      } finally {
        c.disconnect()
      }
    })

    test('unauthorized: disconnected without reconnect', async () => {
      const ev = new Events()
      const c = ActionCable.createConsumer(url())
      try {
        c.subscriptions.create({ channel: 'EchoChannel' }, mixin(ev, 'u'))
        const e = await ev.next(is('u', 'disconnected'), 10000, 'disconnected')
        assert.deepEqual(e.data, { willAttemptReconnect: false })
      } finally {
        c.disconnect()
      }
    })

    test('Rails restart: resubscribed', async () => {
      const ev = new Events()
      const c = ActionCable.createConsumer(url('erin'))
      try {
        c.subscriptions.create({ channel: 'ChatChannel', room: `restart-${version}` }, mixin(ev, 'chat'))
        await ev.next(is('chat', 'connected'))
        await rails.post('/restart')
        await ev.next(is('chat', 'disconnected', (d) => d.willAttemptReconnect === true))
        // The official client reconnects on its own schedule (stale check).
        await ev.next(is('chat', 'connected'), 40000, 'resubscribed') // the first was taken above
        await rails.post('/broadcast', { stream: `chat:restart-${version}`, message: { back: true } })
        assert.deepEqual((await ev.next(is('chat', 'received'))).data, { back: true })
      } finally {
        c.disconnect()
      }
    })
  })
}

describe('CableSocket', () => {
  test('WebSocket constants and close() while connecting', async () => {
    const { CableSocket } = cableway
    assert.deepEqual([CableSocket.CONNECTING, CableSocket.OPEN, CableSocket.CLOSING, CableSocket.CLOSED], [0, 1, 2, 3])
    const s = new CableSocket(url('frank'), ['actioncable-v1-json'])
    assert.equal(s.OPEN, 1)
    assert.equal(s.readyState, CableSocket.CONNECTING)
    assert.throws(() => s.send('{}'), { name: 'InvalidStateError' })
    const ev = new Events()
    s.onopen = () => ev.push({ kind: 'open' })
    s.addEventListener('close', (e) => ev.push({ kind: 'close', data: e }))
    s.close() // rails/rails#43835: no throw, CLOSED once the dial settles
    assert.equal(s.readyState, CableSocket.CLOSING)
    await ev.next((e) => e.kind === 'close')
    assert.equal(s.readyState, CableSocket.CLOSED)
    assert.equal(ev.items.some((e) => e.kind === 'open'), false)
  })

  test('a frame over maxFrameBytes: error, close 1009', async () => {
    const ev = new Events()
    const s = new cableway.CableSocket(url('ivy'), ['actioncable-v1-json'], { maxFrameBytes: 300 })
    s.onmessage = (e) => ev.push({ kind: 'message', data: JSON.parse(e.data) })
    s.onerror = () => ev.push({ kind: 'error' })
    s.onclose = (e) => ev.push({ kind: 'close', data: e })
    await ev.next((e) => e.data?.type === 'welcome')
    const identifier = JSON.stringify({ channel: 'ChatChannel', room: 'big' })
    s.send(JSON.stringify({ command: 'subscribe', identifier }))
    await ev.next((e) => e.data?.type === 'confirm_subscription')
    await rails.post('/broadcast', { stream: 'chat:big', message: { text: 'x'.repeat(1000) } })
    await ev.next((e) => e.kind === 'error')
    assert.equal((await ev.next((e) => e.kind === 'close')).data.code, 1009)
    assert.equal(ev.items.some((e) => e.data?.message), false)
  })

  test('raw frames as JSON, commands checked', async () => {
    const ev = new Events()
    const s = new cableway.CableSocket(url('gina'), ['actioncable-v1-json', 'actioncable-unsupported'], { msgpack: true })
    s.onmessage = (e) => ev.push(JSON.parse(e.data))
    await ev.next((m) => m.type === 'welcome')
    assert.equal(s.protocol, 'actioncable-v1-json')
    assert.throws(() => s.send('not json'), SyntaxError)
    const identifier = JSON.stringify({ channel: 'EchoChannel', b: 2, a: 1 })
    s.send(JSON.stringify({ command: 'subscribe', identifier }))
    const confirm = await ev.next((m) => m.type === 'confirm_subscription')
    assert.equal(confirm.identifier, identifier) // byte for byte
    const closed = new Promise((r) => s.addEventListener('close', r, { once: true }))
    s.close(1000, 'bye')
    assert.equal((await closed).wasClean, true)
  })
})

// A JSON peer on one WebSocket: the wire hands frames to the CableSocket
// and it sends commands on the WebSocket without Go (js/loader.js, Wire);
// what needs Go (an odd command, a frame near the limit) still goes
// through it, in order.
describe('CableSocket on one WebSocket, JSON wire', () => {
  let wss, peer
  const got = new Events()
  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => (p.has('actioncable-v1-json') ? 'actioncable-v1-json' : false) })
    await new Promise((r) => wss.on('listening', r))
    peer = `ws://127.0.0.1:${wss.address().port}/cable`
    wss.on('connection', (ws) => {
      // In one go, before the client's Go has even seen the open event.
      ws.send('{"type":"welcome"}')
      for (let i = 0; i < 5; i++) ws.send(`{"n":${i}}`)
      ws.on('message', (raw) => {
        const text = raw.toString()
        got.push(text)
        const cmd = JSON.parse(text)
        if (cmd.command !== 'message') return
        const { action, size } = JSON.parse(cmd.data)
        if (action === 'burst') {
          // Small, then one that may exceed the limit (it goes through Go,
          // which accepts it), then small again: all in order.
          ws.send('{"n":10}')
          ws.send(`{"n":11,"pad":"${'p'.repeat(size)}"}`)
          for (let i = 12; i < 15; i++) ws.send(`{"n":${i}}`)
        }
        if (action === 'control') ws.send('{"n":20,\x1e"odd":true}') // not JSON: a WebSocket delivers it as it is
        if (action === 'goodbye') ws.close(4002, 'gone')
      })
    })
  })
  after(() => new Promise((r) => { for (const c of wss.clients) c.terminate(); wss.close(r) }))

  test('frames in order across the open and the limit, commands as sent', async () => {
    const ev = new Events()
    const s = new cableway.CableSocket(peer, ['actioncable-v1-json'], { maxFrameBytes: 300 })
    s.onopen = () => ev.push({ kind: 'open' })
    s.onmessage = (e) => ev.push({ kind: 'message', data: e.data })
    s.onerror = (e) => ev.push({ kind: 'error', data: e.message })
    s.onclose = (e) => ev.push({ kind: 'close', data: e })
    await ev.next((e) => e.kind === 'open')
    const frames = async (n) => {
      const list = []
      for (let i = 0; i < n; i++) list.push((await ev.next((e) => e.kind === 'message')).data)
      return list
    }
    assert.deepEqual(await frames(6), ['{"type":"welcome"}', '{"n":0}', '{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}'])
    assert.equal(ev.items.some((e) => e.kind === 'error'), false)

    // A command as the official client writes it reaches the wire as it
    // was written, odd spacing and all; one Go must normalise (an object
    // identifier) is normalised; one that is no command throws.
    const plain = '{ "command": "subscribe", "identifier": "{\\"channel\\":\\"A\\"}" }'
    s.send(plain)
    assert.equal(await got.next(), plain)
    s.send(JSON.stringify({ command: 'subscribe', identifier: { channel: 'B' } }))
    assert.equal(await got.next(), '{"command":"subscribe","identifier":"{\\"channel\\":\\"B\\"}"}')
    assert.throws(() => s.send('{"command":"dance","identifier":"x"}'), SyntaxError)
    assert.throws(() => s.send('not json'), SyntaxError)

    const identifier = '{"channel":"A"}'
    s.send(JSON.stringify({ command: 'message', identifier, data: JSON.stringify({ action: 'burst', size: 150 }) }))
    await got.next()
    const burst = (await frames(5)).map((f) => JSON.parse(f).n)
    assert.deepEqual(burst, [10, 11, 12, 13, 14])

    // Once frames go through Go, an oversize one closes with 1009.
    s.send(JSON.stringify({ command: 'message', identifier, data: JSON.stringify({ action: 'burst', size: 400 }) }))
    await got.next()
    assert.deepEqual(JSON.parse((await ev.next((e) => e.kind === 'message')).data), { n: 10 })
    await ev.next((e) => e.kind === 'error')
    assert.equal((await ev.next((e) => e.kind === 'close')).data.code, 1009)
    assert.equal(ev.items.some((e) => e.kind === 'message'), false, 'nothing after the oversize frame')
  })

  test('the first socket opens while the instance starts, and Go adopts it', async () => {
    const made = [] // the WebSockets cableway makes, as it makes them
    cableway.configure({ WebSocket: class extends WebSocket { constructor(...args) { super(...args); made.push(args[0]) } } })
    await crash() // the next socket finds no running instance, as the first of a page does
    let connections = 0
    const counted = () => connections++
    wss.on('connection', counted)
    const ev = new Events()
    const s = new cableway.CableSocket(peer, ['actioncable-v1-json'])
    assert.deepEqual(made, [peer], 'the WebSocket is made in the constructor, before an instance runs')
    s.onopen = () => ev.push({ kind: 'open' })
    s.onmessage = (e) => ev.push({ kind: 'message', data: e.data })
    s.onclose = (e) => ev.push({ kind: 'close', data: e })
    try {
      await ev.next((e) => e.kind === 'open')
      const frames = []
      for (let i = 0; i < 6; i++) frames.push((await ev.next((e) => e.kind === 'message')).data)
      assert.deepEqual(frames, ['{"type":"welcome"}', '{"n":0}', '{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}'])
      const cmd = '{"command":"subscribe","identifier":"{\\"channel\\":\\"early\\"}"}'
      s.send(cmd)
      assert.equal(await got.next((t) => t === cmd), cmd)
      assert.equal(connections, 1, 'one connection: the early one, adopted')
      assert.deepEqual(made, [peer], 'Go made no other')
      assert.equal(ev.items.some((e) => e.kind === 'close'), false)
    } finally {
      wss.off('connection', counted)
      s.close()
      cableway.configure({ WebSocket })
    }
  })

  // A page's first socket: the instance is still loading (held here until
  // release), and the socket need not wait for it.
  async function beforeInstance(fn) {
    await crash()
    let release
    holdStart(new Promise((r) => { release = r }))
    let connections = 0
    const counted = () => connections++
    wss.on('connection', counted)
    try {
      await fn({ release, connections: () => connections })
    } finally {
      release()
      holdStart(undefined)
      wss.off('connection', counted)
    }
  }

  test('before the instance runs, the socket is open: frames and plain commands go directly, the rest waits for Go in order', () => beforeInstance(async ({ release, connections }) => {
    const ev = new Events()
    const s = new cableway.CableSocket(peer, ['actioncable-v1-json'], { maxFrameBytes: 300 })
    const seen = { open: 0, error: 0, close: 0 }
    s.onopen = () => ev.push({ kind: 'open' }, seen.open++)
    s.onmessage = (e) => ev.push({ kind: 'message', data: e.data })
    s.onerror = (e) => ev.push({ kind: 'error', data: e.message }, seen.error++)
    s.onclose = (e) => ev.push({ kind: 'close', data: e }, seen.close++)
    try {
      await ev.next((e) => e.kind === 'open')
      assert.equal(s.protocol, 'actioncable-v1-json')
      assert.equal(s.transport, 'websocket')
      const frames = []
      for (let i = 0; i < 6; i++) frames.push((await ev.next((e) => e.kind === 'message')).data)
      assert.deepEqual(frames, ['{"type":"welcome"}', '{"n":0}', '{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}'])
      const identifier = '{"channel":"A"}'
      const sub = JSON.stringify({ command: 'subscribe', identifier })
      s.send(sub)
      assert.equal(await got.next((t) => t === sub), sub, 'a plain command goes on the socket before the instance runs')
      // {"n":11} is over a third of maxFrameBytes: it and all after it wait
      // for Go, which applies the limit (it is under it) and keeps the order.
      s.send(JSON.stringify({ command: 'message', identifier, data: JSON.stringify({ action: 'burst', size: 150 }) }))
      await got.next()
      assert.equal((await ev.next((e) => e.kind === 'message')).data, '{"n":10}')
      // A command Go must normalise (an object identifier) waits for Go, and
      // so does every command after it.
      s.send(JSON.stringify({ command: 'subscribe', identifier: { channel: 'B' } }))
      const after = JSON.stringify({ command: 'unsubscribe', identifier })
      s.send(after)
      release()
      assert.equal(JSON.parse((await ev.next((e) => e.kind === 'message')).data).n, 11)
      for (let n = 12; n < 15; n++) assert.equal((await ev.next((e) => e.kind === 'message')).data, `{"n":${n}}`)
      assert.equal(await got.next(), '{"command":"subscribe","identifier":"{\\"channel\\":\\"B\\"}"}')
      assert.equal(await got.next(), after)
      assert.equal(connections(), 1, 'one connection: the early one, adopted by Go')
      assert.deepEqual(seen, { open: 1, error: 0, close: 0 })
    } finally {
      s.close()
    }
  }))

  test('before the instance runs, close() closes the socket as a WebSocket does, and Go never opens it', () => beforeInstance(async ({ release, connections }) => {
    const ev = new Events()
    const s = new cableway.CableSocket(peer, ['actioncable-v1-json'])
    s.onopen = () => ev.push({ kind: 'open' })
    let closes = 0
    s.onclose = (e) => ev.push({ kind: 'close', data: e }, closes++)
    await ev.next((e) => e.kind === 'open')
    s.close(4001, 'bye')
    assert.equal(s.readyState, cableway.CableSocket.CLOSING)
    const { data } = await ev.next((e) => e.kind === 'close')
    assert.deepEqual([data.code, data.reason, data.wasClean], [4001, 'bye', true])
    release()
    await cableway.load()
    const t = new cableway.CableSocket(peer, ['actioncable-v1-json'])
    const tev = new Events()
    t.onmessage = (e) => tev.push(e.data)
    try {
      assert.equal(await tev.next(), '{"type":"welcome"}')
      assert.equal(connections(), 2, 'the closed socket was not opened again')
      assert.equal(closes, 1)
    } finally {
      t.close()
    }
  }))

  test("before the instance runs, the server's close reaches the page with its code", () => beforeInstance(async () => {
    const ev = new Events()
    const s = new cableway.CableSocket(peer, ['actioncable-v1-json'])
    s.onopen = () => ev.push({ kind: 'open' })
    s.onclose = (e) => ev.push({ kind: 'close', data: e })
    await ev.next((e) => e.kind === 'open')
    s.send(JSON.stringify({ command: 'message', identifier: '{"channel":"A"}', data: JSON.stringify({ action: 'goodbye' }) }))
    const { data } = await ev.next((e) => e.kind === 'close')
    assert.deepEqual([data.code, data.reason, data.wasClean], [4002, 'gone', true])
    assert.equal(s.readyState, cableway.CableSocket.CLOSED)
  }))

  test('a text frame is delivered as it came, as a WebSocket does', async () => {
    const ev = new Events()
    const s = new cableway.CableSocket(peer, ['actioncable-v1-json'])
    s.onmessage = (e) => ev.push({ kind: 'message', data: e.data })
    s.onerror = (e) => ev.push({ kind: 'error', data: e.message })
    try {
      await ev.next((e) => e.data === '{"n":4}')
      s.send(JSON.stringify({ command: 'message', identifier: '{"channel":"A"}', data: JSON.stringify({ action: 'control' }) }))
      assert.equal((await ev.next((e) => e.kind === 'message' && e.data.startsWith('{"n":20'))).data, '{"n":20,\x1e"odd":true}')
      assert.equal(ev.items.some((e) => e.kind === 'error'), false)
    } finally {
      s.close()
    }
  })
})

describe('examples/electron main-process logic', () => {
  test('joins the room, speaks, reports broadcasts', async () => {
    const { startChat } = await import('../../examples/electron/cable-main.mjs')
    const ev = new Events()
    const chat = startChat({ url: url('ella'), room: 'electron-test', report: (kind, data) => ev.push({ key: 'e', kind, data }) })
    try {
      await ev.next(is('e', 'status', (d) => d.connected))
      await chat.speak('from main')
      assert.deepEqual((await ev.next(is('e', 'message'))).data, { user: 'ella', text: 'from main', room: 'electron-test' })
    } finally {
      await chat.close()
    }
  })
})

// A MessagePack peer (stock Rails speaks only JSON): the wire is binary,
// JavaScript still sees JSON.
describe('actioncable-v1-msgpack on the wire', () => {
  let wss, peer
  const received = new Events()
  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => (p.has('actioncable-v1-msgpack') ? 'actioncable-v1-msgpack' : false) })
    await new Promise((r) => wss.on('listening', r))
    peer = `ws://127.0.0.1:${wss.address().port}/cable`
    wss.on('connection', (ws) => {
      ws.send(pack({ type: 'welcome' }))
      ws.on('message', (raw, binary) => {
        const cmd = unpack(new Uint8Array(raw))
        received.push({ binary, cmd })
        if (cmd.command === 'subscribe') ws.send(pack({ identifier: cmd.identifier, type: 'confirm_subscription' }))
        if (cmd.command === 'message') ws.send(pack({ identifier: cmd.identifier, message: { echo: JSON.parse(cmd.data), n: 3.5, list: [1, 'two', null] } }))
      })
    })
  })
  after(() => new Promise((r) => { for (const c of wss.clients) c.terminate(); wss.close(r) }))

  test('CableSocket', async () => {
    const ev = new Events()
    const s = new cableway.CableSocket(peer, ['actioncable-v1-json', 'actioncable-unsupported'], { msgpack: true })
    s.onmessage = (e) => ev.push(JSON.parse(e.data))
    await ev.next((m) => m.type === 'welcome')
    assert.equal(s.protocol, 'actioncable-v1-json')
    const identifier = JSON.stringify({ channel: 'EchoChannel', z: 1, a: 2 })
    s.send(JSON.stringify({ command: 'subscribe', identifier }))
    const sub = await received.next()
    assert.deepEqual(sub, { binary: true, cmd: { command: 'subscribe', identifier } })
    assert.equal((await ev.next((m) => m.type === 'confirm_subscription')).identifier, identifier)
    s.send(JSON.stringify({ command: 'message', identifier, data: JSON.stringify({ action: 'echo', x: 'ü' }) }))
    const msg = await ev.next((m) => m.message)
    assert.deepEqual(msg, { identifier, message: { echo: { action: 'echo', x: 'ü' }, n: 3.5, list: [1, 'two', null] } })
    s.close()
  })

  test('consumer API', async () => {
    const ev = new Events()
    const c = cableway.createConsumer(peer, { msgpack: true })
    try {
      const sub = c.subscriptions.create({ channel: 'EchoChannel' }, mixin(ev, 'e'))
      await ev.next(is('e', 'connected'))
      await sub.perform('echo', { y: [true] })
      assert.deepEqual((await ev.next(is('e', 'received'))).data, { echo: { y: [true], action: 'echo' }, n: 3.5, list: [1, 'two', null] })
    } finally {
      await c.disconnect()
    }
  })
})

// Last: it ends the Go instance.
describe('a dead Go instance', () => {
  test('sockets get error + close; consumers an error, then a fresh instance', async () => {
    const ev = new Events()
    const s = new cableway.CableSocket(url('hal'), ['actioncable-v1-json'])
    s.onmessage = (e) => ev.push({ key: 's', kind: 'message', data: e.data })
    s.onerror = () => ev.push({ key: 's', kind: 'error' })
    s.onclose = (e) => ev.push({ key: 's', kind: 'close', data: e })
    await ev.next(is('s', 'message'))

    const c = cableway.createConsumer(url('hal'))
    c.addEventListener('error', (e) => ev.push({ key: 'c', kind: 'error', data: e }))
    try {
      c.subscriptions.create({ channel: 'ChatChannel', room: 'crash' }, mixin(ev, 'chat'))
      await ev.next(is('chat', 'connected', (d) => d.reconnected === false))

      await crash()
      await ev.next(is('s', 'error'))
      assert.equal((await ev.next(is('s', 'close'))).data.code, 1006)
      assert.equal((await ev.next(is('c', 'error'))).data.reason, 'instance_exited')
      await ev.next(is('chat', 'disconnected', (d) => d.willAttemptReconnect === true))
      await ev.next(is('chat', 'connected'), 15000, 'resubscribed on a fresh instance')
      await rails.post('/broadcast', { stream: 'chat:crash', message: { alive: true } })
      assert.deepEqual((await ev.next(is('chat', 'received'))).data, { alive: true })

      const s2 = new cableway.CableSocket(url('hal'), ['actioncable-v1-json'])
      await new Promise((resolve) => { s2.onopen = resolve })
      s2.close()
    } finally {
      await c.disconnect()
    }
  })
})

describe('package surface', () => {
  test('the root exports no test hook, and load() no internal type', async () => {
    assert.equal('crash' in cableway, false, 'crash() is exported from the package root')
    assert.equal(await cableway.load(), undefined)
  })

  test('declarations use unknown, not any', async () => {
    const { readFile } = await import('node:fs/promises')
    for (const file of ['../index.d.ts', '../node.d.ts']) {
      const text = (await readFile(new URL(file, import.meta.url), 'utf8')).replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '')
      assert.doesNotMatch(text, /:\s*any\b|<any>|\bany\[\]/, `${file} declares any`)
    }
  })

  test("the loader uses only wasm_exec.js's public surface", async () => {
    const { readFile } = await import('node:fs/promises')
    const text = (await readFile(new URL('../loader.js', import.meta.url), 'utf8')).replace(/\/\/.*$/gm, '')
    assert.doesNotMatch(text, /\bgo\.(_\w+|exited\b)/, 'loader.js reads a private field of Go')
  })
})
