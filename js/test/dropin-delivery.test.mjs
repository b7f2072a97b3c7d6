// Every frame the drop-in receives reaches JavaScript by itself, without
// waiting for a later event: in headless Chromium, CableSocket against a
// scripted `ws` server on 127.0.0.1 that sends a frame (or a burst, or one
// to many sockets at once) and then nothing. A frame held anywhere between
// the browser's WebSocket and CableSocket's message event (the loader's
// Wire batch, Go's reader, the outbox) would never be released, since no
// other event follows: the wait below would time out.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { WebSocketServer } from 'ws'
import { serve } from '../../examples/browser/serve.mjs'
import { launch } from './chromium.mjs'
import { Events, freePort, root } from './helpers.mjs'

let site, browser, server, wsURL
const conns = new Events() // {ws, path} per accepted socket
const commands = new Events() // {path, data} per frame a socket sent

before(async () => {
  ;[site, browser] = await Promise.all([serve({ dir: root }), launch()])
  server = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (ps) => (ps.has('actioncable-v1-json') ? 'actioncable-v1-json' : false) })
  await new Promise((resolve) => server.once('listening', resolve))
  wsURL = `ws://127.0.0.1:${server.address().port}`
  server.on('connection', (ws, req) => {
    ws.on('message', (data) => commands.push({ path: req.url, data: String(data) }))
    conns.push({ ws, path: req.url })
  })
})
after(async () => {
  await browser?.close()
  await site?.close()
  for (const ws of server?.clients ?? []) ws.terminate()
  await new Promise((resolve) => (server ? server.close(resolve) : resolve()))
})

// page helpers: open(name) opens a CableSocket at /name and records its
// events in S[name]; got(name, n) resolves when n messages arrived.
function pageHelpers() {
  window.S = {}
  window.open_ = (url, name) => {
    const s = new H.cableway.CableSocket(url, ['actioncable-v1-json', 'actioncable-unsupported'])
    const rec = (S[name] = { socket: s, messages: [], events: [] })
    s.onmessage = (e) => rec.messages.push(e.data)
    s.onopen = () => rec.events.push('open')
    s.onerror = (e) => rec.events.push(`error:${e.message}`)
    s.onclose = (e) => rec.events.push(`close:${e.code}:${e.reason}`)
    return true
  }
  return true
}

const frame = (i) => JSON.stringify({ identifier: '{"channel":"T"}', message: { i } })

async function waitPage(page, fn, arg, what, ms = 15000) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 })
  } catch (err) {
    const state = await page.evaluate(() => Object.fromEntries(Object.entries(S).map(([k, v]) => [k, { messages: v.messages.length, events: v.events }])))
    throw new Error(`${what}: ${err.message.split('\n')[0]}; page: ${JSON.stringify(state)}`)
  }
}

const throttles = [1, 20]
for (const rate of throttles) {
  describe(`Chromium, CableSocket, CPU ${rate === 1 ? 'unthrottled' : `throttled ×${rate}`}: no frame waits for a later event`, () => {
    let page, seq = 0
    const name = () => `${rate}-${++seq}`
    before(async () => {
      page = await browser.page(`${site.url}/js/test/harness.html?lib=8&mode=plain`)
      await page.evaluate(`(${pageHelpers})()`)
      if (rate > 1) {
        const cdp = await browser.context.newCDPSession(page)
        await cdp.send('Emulation.setCPUThrottlingRate', { rate })
      }
    })
    after(async () => {
      assert.deepEqual(page.errors.map(String), [])
      await page.close()
    })

    async function openSocket(n) {
      await page.evaluate(([u, n]) => open_(u, n), [`${wsURL}/${n}`, n])
      const { ws } = await conns.next((c) => c.path === `/${n}`, 15000, `socket /${n}`)
      await waitPage(page, (n) => S[n].events.includes('open'), n, `open of ${n}`)
      return ws
    }

    test('one frame to an idle socket', async () => {
      const n = name()
      const ws = await openSocket(n)
      // The page idles (no event pending anywhere), then one frame comes.
      await new Promise((r) => setTimeout(r, 300))
      ws.send(frame(1))
      await waitPage(page, (n) => S[n].messages.length === 1, n, 'the frame')
      // And again, after the first crossing.
      await new Promise((r) => setTimeout(r, 300))
      ws.send(frame(2))
      await waitPage(page, (n) => S[n].messages.length === 2, n, 'the second frame')
      assert.deepEqual(await page.evaluate((n) => S[n].messages, n), [frame(1), frame(2)])
    })

    test('JSON frames pass byte for byte, fields the sdk does not model included', async () => {
      const n = name()
      const ws = await openSocket(n)
      const frames = [
        '{"type":"welcome","sid":"s-1","extra":[1,{"é":"\\u001e"}]}',
        '{ "message" : {"n": 1.50}, "identifier":"{\\"channel\\":\\"T\\"}" }',
        '{"type":"something_new","x":true}',
      ]
      for (const f of frames) ws.send(f)
      await waitPage(page, (n) => S[n].messages.length === 3, n, 'the frames')
      assert.deepEqual(await page.evaluate((n) => S[n].messages, n), frames)
    })

    test('a burst, then nothing', async () => {
      const n = name()
      const ws = await openSocket(n)
      for (let i = 0; i < 200; i++) ws.send(frame(i))
      await waitPage(page, (n) => S[n].messages.length === 200, n, 'the burst')
      assert.deepEqual(await page.evaluate((n) => S[n].messages, n), Array.from({ length: 200 }, (_, i) => frame(i)))
    })

    test('one frame to each of 12 sockets at once (more readers than one crossing runs)', async () => {
      const names = Array.from({ length: 12 }, name)
      const sockets = []
      for (const n of names) sockets.push(await openSocket(n))
      await new Promise((r) => setTimeout(r, 300))
      for (const ws of sockets) ws.send(frame(7))
      await waitPage(page, (names) => names.every((n) => S[n].messages.length === 1), names, 'a frame on every socket')
      for (const ws of sockets) ws.close()
    })

    test('a reply to a command, then nothing', async () => {
      const n = name()
      const ws = await openSocket(n)
      for (let i = 0; i < 20; i++) {
        await page.evaluate(([n, i]) => S[n].socket.send(JSON.stringify({ command: 'message', identifier: '{"channel":"T"}', data: JSON.stringify({ i }) })), [n, i])
        await commands.next((c) => c.path === `/${n}`, 15000, `command ${i}`)
        ws.send(frame(i))
        await waitPage(page, ([n, i]) => S[n].messages.length === i + 1, [n, i], `reply ${i}`)
      }
    })

    test('a frame while another socket dials and a third closes', async () => {
      const a = name(), b = name(), c = name()
      const wsA = await openSocket(a)
      await openSocket(c)
      await page.evaluate(([u, b, c]) => { open_(u, b); S[c].socket.close(); return true }, [`${wsURL}/${b}`, b, c])
      wsA.send(frame(1))
      await waitPage(page, (a) => S[a].messages.length === 1, a, 'the frame')
      await waitPage(page, (c) => S[c].events.some((e) => e.startsWith('close:')), c, 'the close')
      await waitPage(page, (b) => S[b].events.includes('open'), b, 'the open')
    })
  })
}

// doubled finds a prefix said twice in a row ("websocket: websocket: dial").
const doubled = /(?:^|: )([\w-]+): \1: /

describe('Chromium, CableSocket: error and close events say what happened', () => {
  let page
  before(async () => {
    page = await browser.page(`${site.url}/js/test/harness.html?lib=8&mode=plain`)
    await page.evaluate(`(${pageHelpers})()`)
  })
  after(async () => {
    assert.deepEqual(page.errors.map(String), [])
    await page.close()
  })
  const closed = (n) => waitPage(page, (n) => S[n].events.some((e) => e.startsWith('close:')), n, `the close of ${n}`)
  const events = (n) => page.evaluate((n) => S[n].events, n)

  test('nothing listening: error, then close 1006 with the same reason', async () => {
    const url = `ws://127.0.0.1:${await freePort()}/cable`
    await page.evaluate(([u, n]) => open_(`${u}?token=secret`, n), [url, 'refused'])
    await closed('refused')
    const [error, close, ...rest] = await events('refused')
    assert.deepEqual(rest, [])
    const message = error.slice('error:'.length)
    assert.match(message, new RegExp(`^websocket: dial ${url.replace(/[.?/]/g, '\\$&')}: no connection \\(status 1006: refused, unreachable or a failed handshake`))
    assert.doesNotMatch(message, doubled)
    assert.doesNotMatch(message, /secret/) // the query (tokens) is not shown
    assert.equal(close, `close:1006:${message}`)
  })

  test('the connection drops: error, then close 1006 saying it was lost', async () => {
    const ws = await (async () => {
      await page.evaluate(([u, n]) => open_(u, n), [`${wsURL}/lost`, 'lost'])
      return (await conns.next((c) => c.path === '/lost', 15000, 'socket /lost')).ws
    })()
    await waitPage(page, () => S.lost.events.includes('open'), null, 'open')
    ws.terminate()
    await closed('lost')
    const [, error, close] = await events('lost')
    assert.equal(error, 'error:websocket: connection lost without a close frame (status 1006)')
    assert.equal(close, 'close:1006:websocket: connection lost without a close frame (status 1006)')
  })

  test('send() between a lost connection and its close event does not throw (as a browser WebSocket)', async () => {
    await page.evaluate(([u, n]) => {
      open_(u, n)
      const s = S[n].socket
      // The error event comes just before the close event: the socket is
      // still OPEN to JavaScript, while Go has already let it go.
      s.addEventListener('error', () => {
        try {
          s.send(JSON.stringify({ command: 'message', identifier: '{}', data: '{}' }))
          S[n].events.push(`send in state ${s.readyState}: ok`)
        } catch (err) {
          S[n].events.push(`send in state ${s.readyState}: threw ${err}`)
        }
      })
      return true
    }, [`${wsURL}/late`, 'late'])
    const { ws } = await conns.next((c) => c.path === '/late', 15000, 'socket /late')
    await waitPage(page, () => S.late.events.includes('open'), null, 'open')
    ws.terminate()
    await closed('late')
    const ev = await events('late')
    assert.deepEqual(ev.filter((e) => e.startsWith('send')), ['send in state 1: ok'])
    assert.match(ev.at(-1), /^close:1006:/)
  })

  test('the WebAssembly cannot be loaded: error, then close 1006 saying why', async () => {
    const p = await browser.context.newPage() // a page without the harness: nothing loaded yet
    try {
      await p.goto(`${site.url}/package.json`)
      const ev = await p.evaluate(async (u) => {
        const m = await import('/js/index.js')
        m.load({ wasmURL: '/js/dist/missing.wasm' }).catch(() => {})
        const s = new m.CableSocket(u, ['actioncable-v1-json'])
        const events = []
        s.onerror = (e) => events.push(`error:${e.message}`)
        return new Promise((resolve) => { s.onclose = (e) => resolve([...events, `close:${e.code}:${e.reason}`]) })
      }, wsURL)
      assert.equal(ev.length, 2)
      assert.match(ev[0], /^error:cableway: fetching .*missing\.wasm failed with HTTP 404\b/)
      assert.equal(ev[1], `close:1006:${ev[0].slice('error:'.length)}`)
    } finally {
      await p.close()
    }
  })

  test("the server's close frame: its code and reason, clean, no error", async () => {
    await page.evaluate(([u, n]) => open_(u, n), [`${wsURL}/bye`, 'bye'])
    const { ws } = await conns.next((c) => c.path === '/bye', 15000, 'socket /bye')
    await waitPage(page, () => S.bye.events.includes('open'), null, 'open')
    ws.close(4001, 'bye now')
    await closed('bye')
    assert.deepEqual(await events('bye'), ['open', 'close:4001:bye now'])
    assert.equal(await page.evaluate(() => S.bye.socket.readyState), 3)
  })
})
