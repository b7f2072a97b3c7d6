// The sdk compiled to WebAssembly on its own (wasm/internal/standalone), in
// headless Chromium with only Go's wasm_exec.js: the WebSocket transport on
// globalThis.WebSocket (no cableway loader, no JS hook), and the bridge
// transports on EventSource and fetch, against the example Rails app and
// the real bridge.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { serve } from '../../examples/browser/serve.mjs'
import { launch } from './chromium.mjs'
import { blockedCable, root, startBridge, startRails } from './helpers.mjs'

let rails, site, browser, bridge, refused, dir, wasm
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cableway-standalone-'))
  wasm = join(dir, 'standalone.wasm')
  const build = promisify(execFile)(process.env.GO || 'go', ['build', '-o', wasm, './wasm/internal/standalone'], {
    cwd: root, env: { ...process.env, GOOS: 'js', GOARCH: 'wasm' },
  })
  ;[rails, site, browser, refused] = await Promise.all([startRails(), serve({ dir: root }), launch(), blockedCable('refuse'), build])
  bridge = await startBridge({ upstream: rails.ws, allowedOrigins: [site.url] })
})
after(async () => {
  await browser?.close()
  await Promise.all([site?.close(), refused?.close()])
  bridge?.stop()
  rails?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

test('sdk/cable in Chromium without the loader: WebSocket, SSE and long-poll', async () => {
  await browser.context.route('**/standalone.wasm', (route) => route.fulfill({ path: wasm, contentType: 'application/wasm' }))
  const page = await browser.page(`${site.url}/js/test/standalone.html`)
  try {
    const reports = await page.evaluate((c) => H.run(c), {
      cable: `${rails.ws}?token=secret-solo`,
      blocked: `${refused.ws}?token=secret-solo`,
      bridge: bridge.url,
    })
    const byName = Object.fromEntries(reports.map((r) => [r.name, r]))
    for (const [name, transport] of [['websocket', 'websocket'], ['bridge', 'sse'], ['longpoll', 'longpoll']]) {
      const r = byName[name]
      assert.equal(r?.error, undefined, `${name}: ${r?.error}`)
      assert.equal(r.transport, transport, name)
      assert.deepEqual(r.params, { via: name })
      assert.deepEqual(r.echo, { n: 1, s: 'ü', user: 'solo' })
    }
    assert.deepEqual(byName.bridge.changes, ['websocket→sse'])
    assert.deepEqual(page.errors.map(String), [])
  } finally {
    await page.close()
  }
})
