// Fallback transports, against the real bridge (`cableway bridge`, built
// from ./server/cmd/cableway) in front of the example Rails app, with the
// cable URL pointing where WebSockets fail:
//   - headless Chromium, the official @rails/actioncable 6.1 and 8.x with
//     the drop-in: over SSE when the WebSocket is refused or black-holed,
//     over long-polling when a proxy also buffers the event stream, and
//     with transports: ['longpoll'];
//   - Node: the consumer API and CableSocket over long-polling (Node has
//     no EventSource, so SSE is skipped there, which is checked too).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from 'ws'
import { serve } from '../../examples/browser/serve.mjs'
import { launch } from './chromium.mjs'
import { blockedCable, bufferingProxy, Events, root, startBridge, startRails } from './helpers.mjs'

const cableway = await import('../index.js')
cableway.load({ WebSocket })

let rails, site, browser, bridge, refused, blackHole, proxy
before(async () => {
  ;[rails, site, browser, refused, blackHole] = await Promise.all([
    startRails(), serve({ dir: root }), launch(), blockedCable('refuse'), blockedCable('blackhole'),
  ])
  bridge = await startBridge({ upstream: rails.ws, allowedOrigins: [site.url] })
  proxy = await bufferingProxy(bridge.url)
})
after(async () => {
  await browser?.close()
  await Promise.all([site?.close(), proxy?.close(), refused?.close(), blackHole?.close()])
  bridge?.stop()
  rails?.stop()
})

// waitEvent waits (with a deadline) for an event the page recorded, and
// removes it from the page's list: {key, kind, data}.
async function waitEvent(page, key, kind, pred = 'true', ms = 10000) {
  const handle = await page.waitForFunction(
    ([key, kind, pred]) => {
      const i = H.events.findIndex((e) => e.key === key && e.kind === kind && new Function('d', `return ${pred}`)(e.data))
      return i >= 0 && H.events.splice(i, 1)[0]
    },
    [key, kind, pred],
    { timeout: ms, polling: 20 },
  )
  return handle.jsonValue()
}

// The scenarios: which cable URL, which bridge, which options, and the
// transport the connection must end on.
const scenarios = [
  { name: 'WebSocket refused → SSE', cable: () => refused.ws, options: () => ({ bridge: bridge.url }), transport: 'sse', reason: /websocket: .*1006/ },
  { name: 'WebSocket refused, event stream buffered by a proxy → long-poll', cable: () => refused.ws, options: () => ({ bridge: proxy.url }), transport: 'longpoll', reason: /websocket: .*1006/ },
  { name: "transports: ['longpoll']", cable: () => refused.ws, options: () => ({ bridge: bridge.url, transports: ['longpoll'] }), transport: 'longpoll' },
  // Only SSE behind the WebSocket: which bridge transport wins a race
  // against a hung WebSocket depends on the machine's load.
  { name: 'WebSocket black-holed → SSE after the head start', cable: () => blackHole.ws, options: () => ({ bridge: bridge.url, headStartMs: 300, transports: ['websocket', 'sse'] }), transport: 'sse', reason: /^websocket: no welcome within \d+ms$/, libs: ['8'] },
]

for (const lib of ['8', '61']) {
  describe(`Chromium, @rails/actioncable ${lib === '61' ? '6.1' : '8.x'} with CableSocket, WebSocket blocked`, () => {
    let page
    before(async () => {
      page = await browser.page(`${site.url}/js/test/harness.html?lib=${lib}&mode=cable`)
    })
    after(async () => {
      assert.deepEqual(page.errors.map(String), [])
      await page.close()
    })

    for (const sc of scenarios) {
      if (sc.libs && !sc.libs.includes(lib)) continue
      test(`${sc.name}: subscribe, broadcasts, perform`, async () => {
        const room = `fb-${lib}-${sc.transport}-${scenarios.indexOf(sc)}`
        const user = `fb${lib}${scenarios.indexOf(sc)}`
        await page.evaluate((o) => H.install(o), sc.options())
        await page.evaluate((u) => H.connect(u), `${sc.cable()}?token=secret-${user}`) // the token reaches Rails through the bridge
        await page.evaluate((room) => {
          H.subscribe('echo', { channel: 'EchoChannel', room })
          H.subscribe('chat', { channel: 'ChatChannel', room })
        }, room)
        assert.deepEqual((await waitEvent(page, 'echo', 'received')).data, { params: { room } })
        await waitEvent(page, 'echo', 'connected')
        await waitEvent(page, 'chat', 'connected')
        assert.equal(await page.evaluate(() => H.transport()), sc.transport)
        if (sc.reason) {
          const change = (await waitEvent(page, 'socket', 'transportchange')).data
          assert.equal(change.from, 'websocket')
          assert.equal(change.to, sc.transport)
          assert.equal(change.upgrade, false)
          assert.match(change.reason, sc.reason)
        }

        assert.equal(await page.evaluate(() => H.perform('echo', 'echo', { n: 7, s: 'ü' })), true)
        assert.deepEqual((await waitEvent(page, 'echo', 'received')).data, { n: 7, s: 'ü', user })
        await rails.post('/broadcast', { stream: `chat:${room}`, messages: [{ n: 1 }, { n: 2 }] })
        const got = [(await waitEvent(page, 'chat', 'received')).data, (await waitEvent(page, 'chat', 'received')).data]
        assert.deepEqual(got.sort((a, b) => a.n - b.n), [{ n: 1 }, { n: 2 }])
        await page.evaluate(() => H.perform('chat', 'speak', { text: 'over the bridge' }))
        assert.deepEqual((await waitEvent(page, 'chat', 'received')).data, { user, text: 'over the bridge', room })
        await page.evaluate(() => H.disconnect())
        await page.evaluate(() => { H.events.length = 0 })
      })
    }
  })
}

describe('Chromium, @rails/actioncable 8.x: back to a WebSocket', () => {
  test('SSE, then the probe re-attaches the session over a WebSocket through the bridge', async () => {
    const page = await browser.page(`${site.url}/js/test/harness.html?lib=8&mode=cable`)
    try {
      await page.evaluate((o) => H.install(o), { bridge: bridge.url, probeIntervalMs: 300 })
      await page.evaluate((u) => H.connect(u), `${refused.ws}?token=secret-uma`)
      await page.evaluate(() => H.subscribe('chat', { channel: 'ChatChannel', room: 'fb-upgrade' }))
      await waitEvent(page, 'chat', 'connected')
      assert.deepEqual((await waitEvent(page, 'socket', 'transportchange', 'd.to === "sse"')).data.upgrade, false)
      const up = (await waitEvent(page, 'socket', 'transportchange', 'd.upgrade')).data
      assert.deepEqual(up, { from: 'sse', to: 'websocket', upgrade: true, reason: 'upgrade' })
      assert.equal(await page.evaluate(() => H.transport()), 'websocket')
      await rails.post('/broadcast', { stream: 'chat:fb-upgrade', message: { after: 'upgrade' } })
      assert.deepEqual((await waitEvent(page, 'chat', 'received')).data, { after: 'upgrade' })
      await page.evaluate(() => H.perform('chat', 'speak', { text: 'up' }))
      assert.deepEqual((await waitEvent(page, 'chat', 'received')).data, { user: 'uma', text: 'up', room: 'fb-upgrade' })
      await page.evaluate(() => H.disconnect())
      assert.deepEqual(page.errors.map(String), [])
    } finally {
      await page.close()
    }
  })
})

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

describe('Node, WebSocket refused: long-poll through the bridge (no EventSource in Node)', () => {
  test('consumer API: subscribe, broadcasts, perform; SSE skipped', async () => {
    const ev = new Events()
    const c = cableway.createConsumer(`${refused.ws}?token=secret-nora`, { bridge: bridge.url })
    c.addEventListener('transportchange', (e) => ev.push({ key: 'c', kind: 'transportchange', data: e }))
    c.addEventListener('connected', (e) => ev.push({ key: 'c', kind: 'connected', data: e }))
    try {
      const chat = c.subscriptions.create({ channel: 'ChatChannel', room: 'node-lp' }, mixin(ev, 'chat'))
      const echo = c.subscriptions.create({ channel: 'EchoChannel', x: 1 }, mixin(ev, 'echo'))
      const change = (await ev.next(is('c', 'transportchange'), 15000, 'transportchange')).data
      assert.deepEqual([change.from, change.to, change.upgrade], ['websocket', 'longpoll', false])
      assert.match(change.reason, /no EventSource/)
      assert.equal((await ev.next(is('c', 'connected'))).data.transport, 'longpoll')
      assert.equal(c.transport, 'longpoll')
      assert.deepEqual((await ev.next(is('echo', 'received'))).data, { params: { x: 1 } })
      await ev.next(is('chat', 'connected'))
      await ev.next(is('echo', 'connected'))

      await echo.perform('echo', { text: 'hé' })
      assert.deepEqual((await ev.next(is('echo', 'received'))).data, { text: 'hé', user: 'nora' })
      await rails.post('/broadcast', { stream: 'chat:node-lp', message: { from: 'rails' } })
      assert.deepEqual((await ev.next(is('chat', 'received'))).data, { from: 'rails' })
      await chat.perform('speak', { text: 'polling' })
      assert.deepEqual((await ev.next(is('chat', 'received'))).data, { user: 'nora', text: 'polling', room: 'node-lp' })
    } finally {
      await c.disconnect()
    }
  })

  test("CableSocket with transports: ['longpoll']", async () => {
    const ev = new Events()
    const s = new cableway.CableSocket(`${refused.ws}?token=secret-otto`, ['actioncable-v1-json'], { bridge: bridge.url, transports: ['longpoll'] })
    s.onmessage = (e) => ev.push(JSON.parse(e.data))
    s.onopen = () => ev.push({ type: 'open' })
    await ev.next((m) => m.type === 'open')
    assert.equal(s.transport, 'longpoll')
    assert.equal(s.protocol, 'actioncable-v1-json')
    await ev.next((m) => m.type === 'welcome')
    const identifier = JSON.stringify({ channel: 'EchoChannel', z: 2 })
    s.send(JSON.stringify({ command: 'subscribe', identifier }))
    assert.deepEqual((await ev.next((m) => m.message?.params)).message, { params: { z: 2 } })
    await ev.next((m) => m.type === 'confirm_subscription')
    s.send(JSON.stringify({ command: 'message', identifier, data: JSON.stringify({ action: 'echo', k: 'v' }) }))
    assert.deepEqual((await ev.next((m) => m.message?.k)).message, { k: 'v', user: 'otto' })
    const closed = new Promise((r) => s.addEventListener('close', r, { once: true }))
    s.close()
    assert.equal((await closed).wasClean, true)
  })

  test('a transport that needs the bridge, without one: error, close 1006', async () => {
    const s = new cableway.CableSocket(refused.ws, [], { transports: ['sse'] })
    const ev = new Events()
    s.onerror = (e) => ev.push({ kind: 'error', data: e.message })
    s.onclose = (e) => ev.push({ kind: 'close', data: e.code })
    assert.match((await ev.next((e) => e.kind === 'error')).data, /needs the bridge option/)
    assert.equal((await ev.next((e) => e.kind === 'close')).data, 1006)
  })
})
