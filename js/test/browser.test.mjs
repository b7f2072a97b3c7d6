// Headless Chromium (Debian's, through playwright-core): the official
// @rails/actioncable 6.1 and 8.x on a page, with CableSocket installed,
// against the example Rails app. The page and the wasm come from a small
// static server on another port (an Origin Rails allows by default).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { serve } from '../../examples/browser/serve.mjs'
import { launch } from './chromium.mjs'
import { root, startRails } from './helpers.mjs'

let rails, site, browser
before(async () => {
  ;[rails, site, browser] = await Promise.all([startRails(), serve({ dir: root }), launch()])
})
after(async () => {
  await browser?.close()
  await site?.close()
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

for (const lib of ['8', '61']) {
  describe(`Chromium, @rails/actioncable ${lib === '61' ? '6.1' : '8.x'} with CableSocket`, () => {
    let page
    before(async () => {
      page = await browser.page(`${site.url}/js/test/harness.html?lib=${lib}&mode=cable`)
    })
    after(async () => {
      assert.deepEqual(page.errors.map(String), [])
      await page.close()
    })

    test('the drop-in is installed', async () => {
      const name = await page.evaluate(() => Object.getPrototypeOf(H.ActionCable.adapters.WebSocket).name)
      assert.equal(name, 'CableSocket')
    })

    test('subscribe, perform, broadcasts, rejection', async () => {
      await page.evaluate((u) => H.connect(u), `${rails.ws}?token=secret-pat${lib}`)
      await page.evaluate(() => {
        H.subscribe('echo', { channel: 'EchoChannel', lib: 'x' })
        H.subscribe('chat', { channel: 'ChatChannel', room: 'browser' })
        H.subscribe('rej', { channel: 'RejectChannel' })
      })
      assert.deepEqual((await waitEvent(page, 'echo', 'received')).data, { params: { lib: 'x' } })
      await waitEvent(page, 'echo', 'connected')
      await waitEvent(page, 'chat', 'connected')
      await waitEvent(page, 'rej', 'rejected')
      assert.equal(await page.evaluate(() => H.state()), 'open')

      assert.equal(await page.evaluate(() => H.perform('echo', 'echo', { n: 42, s: 'ü' })), true)
      assert.deepEqual((await waitEvent(page, 'echo', 'received')).data, { n: 42, s: 'ü', user: `pat${lib}` })

      await rails.post('/broadcast', { stream: 'chat:browser', message: { from: 'rails' } })
      assert.deepEqual((await waitEvent(page, 'chat', 'received')).data, { from: 'rails' })
      await page.evaluate(() => H.perform('chat', 'speak', { text: 'hello' }))
      assert.deepEqual((await waitEvent(page, 'chat', 'received')).data, { user: `pat${lib}`, text: 'hello', room: 'browser' })
    })

    test('Rails restart: resubscribed', async () => {
      await rails.post('/restart')
      await waitEvent(page, 'chat', 'disconnected', 'd.willAttemptReconnect === true')
      await waitEvent(page, 'chat', 'connected', 'true', 40000) // the official client's own schedule
      await rails.post('/broadcast', { stream: 'chat:browser', message: { back: true } })
      assert.deepEqual((await waitEvent(page, 'chat', 'received')).data, { back: true })
      await page.evaluate(() => H.disconnect())
    })

    test('unauthorized: disconnected without reconnect', async () => {
      await page.evaluate((u) => H.connect(u), rails.ws) // no token
      await page.evaluate(() => H.subscribe('u', { channel: 'EchoChannel' }))
      const e = await waitEvent(page, 'u', 'disconnected')
      assert.deepEqual(e.data, { willAttemptReconnect: false })
      await page.evaluate(() => H.disconnect())
    })
  })
}

// A page's first socket does not wait for the WebAssembly instance: here
// the .wasm is held back by the browser's network layer until the test
// releases it, and the official client connects, subscribes and performs
// meanwhile; then Go adopts the socket, and the page goes on with it.
describe('Chromium: the first socket while the .wasm is still on its way', () => {
  test('connected, confirmed and echoed before the instance runs; one WebSocket, adopted', async () => {
    const page = await browser.context.newPage()
    const errors = []
    page.on('pageerror', (e) => errors.push(e))
    let release
    const held = new Promise((r) => { release = r })
    let wasmAsked = 0
    await page.route(/\.wasm$/, async (route) => {
      wasmAsked++
      await held
      await route.continue()
    })
    await page.addInitScript(() => {
      const WS = globalThis.WebSocket
      window.made = 0
      globalThis.WebSocket = class extends WS {
        constructor(...args) {
          super(...args)
          window.made++
        }
      }
    })
    const next = (kind) => page.waitForFunction((kind) => {
      const i = events.findIndex((e) => e.kind === kind)
      return i >= 0 && events.splice(i, 1)[0]
    }, kind, { timeout: 20000, polling: 20 }).then((h) => h.jsonValue())
    page.on('console', (m) => { if (process.env.CABLEWAY_DEBUG) console.log('[page]', m.text()) })
    try {
      await page.goto(`${site.url}/js/test/early.html?cable=${encodeURIComponent(`${rails.ws}?token=secret-early`)}`)
      assert.deepEqual((await next('received')).data, { params: { lib: 'early' } })
      await next('connected')
      await page.evaluate(() => sub.perform('echo', { n: 1 }))
      assert.deepEqual((await next('received')).data, { n: 1, user: 'early' })
      assert.ok(wasmAsked <= 1, 'the .wasm is fetched once at most, and was held back all along')
      release()
      assert.equal(await page.evaluate(() => loaded()), true) // Go runs now
      await page.evaluate(() => sub.perform('echo', { n: 2 }))
      assert.deepEqual((await next('received')).data, { n: 2, user: 'early' })
      assert.equal(await page.evaluate(() => window.made), 1, 'one WebSocket: Go adopted the early one')
      assert.equal(wasmAsked, 1)
      assert.deepEqual(errors.map(String), [])
    } finally {
      release()
      await page.close()
    }
  })
})
