// The npm package as a user gets it: `npm pack` (which builds the wasm on
// prepack), the tarball's file list and size, then the tarball installed
// into a fresh folder with `ws` and `@rails/actioncable`, nothing else of
// this repository in reach:
//   - Node 20, through 'cableway/node': the consumer API and the official
//     client with the drop-in against the example Rails app (subscribe,
//     echo, broadcast), and the fall back to long-polling through the
//     bridge when the WebSocket is refused;
//   - Node 20, the same install with its wasm_exec.js, .wasm or wasm.js removed:
//     load(), createConsumer(...).ready and the drop-in fail with a clear
//     error instead of hanging;
//   - Node 20: the wasmModule option (a module compiled by the page);
//   - headless Chromium: a page that imports the installed package (by an
//     import map, as a bundler would resolve it), compiles its .wasm from
//     <head> as js/README.md shows, and chats through Rails.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { serve } from '../../examples/browser/serve.mjs'
import { launch } from './chromium.mjs'
import { blockedCable, root, startBridge, startRails } from './helpers.mjs'

const run = promisify(execFile)
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const version = (name) => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version

// Limits of the tarball: the wasm is ~5 MB raw, ~1.5 MB gzipped. A tarball
// far above this ships something it should not (tests, sources, a debug
// build); far below, it lost the wasm.
const maxTarball = 3 << 20
const maxUnpacked = 9 << 20
const minWasm = 1 << 20

const tmp = mkdtempSync(join(tmpdir(), 'cableway-pack-'))
const app = join(tmp, 'app')
let tarball, files, rails, bridge, refused, site, browser

before(async () => {
  const railsStarted = startRails()
  railsStarted.catch(() => {})
  await run(npm, ['pack', '--pack-destination', tmp, '--no-audit', '--no-fund'], { cwd: root, maxBuffer: 1 << 24 })
  tarball = join(tmp, readdirSync(tmp).find((f) => f.endsWith('.tgz')))
  files = (await run('tar', ['tzf', tarball])).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''))

  // A fresh project: the tarball, ws and the official client (the
  // versions this repository's tests use, so npm's cache serves them).
  rmSync(app, { recursive: true, force: true })
  await run('mkdir', ['-p', app])
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-check', private: true, type: 'module' }))
  await run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock',
    tarball, `ws@${version('ws')}`, `@rails/actioncable@${version('@rails/actioncable')}`], { cwd: app, maxBuffer: 1 << 24 })

  rails = await railsStarted
  refused = await blockedCable('refuse')
  site = await serve({ dir: app })
  bridge = await startBridge({ upstream: rails.ws, allowedOrigins: [site.url] })
})

after(async () => {
  await browser?.close()
  await Promise.all([site?.close(), refused?.close()])
  bridge?.stop()
  rails?.stop()
  rmSync(tmp, { recursive: true, force: true })
})

// wasmName is the content-hashed name of the packed .wasm (js/build.mjs).
const wasmName = () => files.find((f) => /^js\/dist\/cableway\.[0-9a-f]{16}\.wasm$/.test(f))?.slice('js/dist/'.length)

test('the tarball holds the package, one content-hashed wasm, the module naming it and wasm_exec.js, and nothing else', async () => {
  const name = wasmName()
  assert.ok(name, `no js/dist/cableway.<hash>.wasm in ${files.join(', ')}`)
  assert.deepEqual(files.sort(), [
    'LICENSE', 'README.md',
    'js/README.md', 'js/consumer.js', `js/dist/${name}`, 'js/dist/wasm.d.ts', 'js/dist/wasm.js', 'js/dist/wasm_exec.js',
    'js/index.d.ts', 'js/index.js', 'js/loader.js', 'js/node.d.ts', 'js/node.js', 'js/socket.js',
    'package.json',
  ].sort())
  const size = statSync(tarball).size
  assert.ok(size < maxTarball, `tarball is ${size} bytes, more than ${maxTarball}`)
  const installed = join(app, 'node_modules', 'cableway')
  const unpacked = files.reduce((n, f) => n + statSync(join(installed, f)).size, 0)
  assert.ok(unpacked < maxUnpacked, `unpacked ${unpacked} bytes, more than ${maxUnpacked}`)
  const bytes = readFileSync(join(installed, 'js/dist', name))
  assert.ok(bytes.length > minWasm, `${name} is only ${bytes.length} bytes`)
  // The name is the content's: a changed module gets a new name, so the
  // file may be served immutable.
  assert.equal(name, `cableway.${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.wasm`)
  const manifest = await import(pathToFileURL(join(installed, 'js/dist/wasm.js')).href)
  assert.equal(manifest.wasmFile, name)
  assert.equal(manifest.wasmURL.href, pathToFileURL(join(installed, 'js/dist', name)).href)
  // The example's server (what make demo serves) sends it that way.
  const resp = await fetch(`${site.url}/node_modules/cableway/js/dist/${name}`, { method: 'HEAD' })
  assert.equal(resp.status, 200)
  assert.equal(resp.headers.get('content-type'), 'application/wasm')
  assert.match(resp.headers.get('cache-control'), /\bimmutable\b/)
  assert.match(resp.headers.get('cache-control'), /max-age=31536000/)
  console.log(`# tarball ${size} bytes, unpacked ${unpacked} bytes, ${name} ${bytes.length} bytes, ${files.length} files`)
  assert.match(readFileSync(join(installed, 'LICENSE'), 'utf8'), /^MIT License[\s\S]*The Cableway authors/)
})

// node runs a script in the fresh project and resolves to its output; the
// script must exit 0 within ms.
async function node(name, script, ms = 90000) {
  writeFileSync(join(app, name), script)
  const proc = spawn(process.execPath, [name], {
    cwd: app,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RAILS_WS: rails.ws, RAILS_HTTP: rails.http, BRIDGE: bridge.url, REFUSED: refused.ws },
  })
  let out = ''
  proc.stdout.on('data', (d) => { out += d })
  proc.stderr.on('data', (d) => { out += d })
  const code = await new Promise((resolve) => {
    const t = setTimeout(() => { proc.kill('SIGKILL'); resolve('timeout') }, ms)
    proc.on('exit', (c) => { clearTimeout(t); resolve(c) })
  })
  assert.equal(code, 0, `${name} exited ${code}:\n${out}`)
  return out
}

// Helpers shared by the scripts: a queue of events awaited with deadlines.
const prelude = `
import assert from 'node:assert/strict'
const { RAILS_WS, RAILS_HTTP, BRIDGE, REFUSED } = process.env
const within = (p, ms, what) => Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error('timed out waiting for ' + what)), ms).unref())])
class Events {
  items = []; waiters = []
  push(v) { const i = this.waiters.findIndex((w) => w.match(v)); if (i >= 0) return this.waiters.splice(i, 1)[0].resolve(v); this.items.push(v) }
  next(match, what, ms = 15000) {
    const i = this.items.findIndex(match)
    if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0])
    return within(new Promise((resolve) => this.waiters.push({ match, resolve })), ms, what)
  }
}
const mixin = (ev, key) => ({
  connected: (d) => ev.push({ key, kind: 'connected', d }),
  rejected: () => ev.push({ key, kind: 'rejected' }),
  received: (d) => ev.push({ key, kind: 'received', d }),
})
const is = (key, kind) => (e) => e.key === key && e.kind === kind
`

test('Node 20: cableway/node, the consumer API and the official client with the drop-in, from the installed tarball', async () => {
  const out = await node('node-check.mjs', `
import 'cableway/node' // first: the globals @rails/actioncable reads, and ws
import * as ActionCable from '@rails/actioncable'
import { createConsumer, install } from 'cableway/node'
${prelude}

// The consumer API: subscribe, echo, broadcast.
{
  const ev = new Events()
  const c = createConsumer(RAILS_WS + '?token=secret-packapi')
  await within(c.ready, 20000, 'ready')
  const echo = c.subscriptions.create({ channel: 'EchoChannel', via: 'api' }, mixin(ev, 'echo'))
  assert.deepEqual((await ev.next(is('echo', 'received'), 'echo params')).d, { params: { via: 'api' } })
  await ev.next(is('echo', 'connected'), 'echo confirmed')
  await echo.perform('echo', { text: 'from the tarball' })
  assert.deepEqual((await ev.next(is('echo', 'received'), 'echo')).d, { text: 'from the tarball', user: 'packapi' })
  const chat = c.subscriptions.create({ channel: 'ChatChannel', room: 'pack-api' }, mixin(ev, 'chat'))
  await ev.next(is('chat', 'connected'), 'chat confirmed')
  const r = await fetch(RAILS_HTTP + '/broadcast', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ stream: 'chat:pack-api', message: { n: 1 } }) })
  assert.ok(r.ok, 'broadcast: HTTP ' + r.status)
  assert.deepEqual((await ev.next(is('chat', 'received'), 'broadcast')).d, { n: 1 })
  assert.equal(c.transport, 'websocket')
  await c.disconnect()
  console.log('ok consumer API')
}

// The official client with the drop-in; an http:// URL, which ActionCable
// turns into ws:// through the document cableway/node defines.
{
  install(ActionCable)
  const ev = new Events()
  const c = ActionCable.createConsumer(RAILS_HTTP + '/cable?token=secret-packac')
  const chat = c.subscriptions.create({ channel: 'ChatChannel', room: 'pack-ac' }, mixin(ev, 'chat'))
  await ev.next(is('chat', 'connected'), 'official client confirmed')
  assert.equal(c.connection.webSocket.transport, 'websocket')
  chat.perform('speak', { text: 'hi from @rails/actioncable' })
  assert.deepEqual((await ev.next(is('chat', 'received'), 'speak')).d, { user: 'packac', text: 'hi from @rails/actioncable', room: 'pack-ac' })
  c.disconnect()
  console.log('ok official client')
}

// WebSocket refused: long-polling through the bridge (Node has no
// EventSource, so SSE is skipped), with the official client and the API.
{
  install(ActionCable, { bridge: BRIDGE })
  const ev = new Events()
  const c = ActionCable.createConsumer(REFUSED + '?token=secret-packlp')
  const chat = c.subscriptions.create({ channel: 'ChatChannel', room: 'pack-lp' }, mixin(ev, 'chat'))
  await ev.next(is('chat', 'connected'), 'long-poll confirmed', 30000)
  assert.equal(c.connection.webSocket.transport, 'longpoll')
  chat.perform('speak', { text: 'over long-polling' })
  assert.deepEqual((await ev.next(is('chat', 'received'), 'speak over long-poll', 30000)).d, { user: 'packlp', text: 'over long-polling', room: 'pack-lp' })
  c.disconnect()

  const api = createConsumer(REFUSED + '?token=secret-packlp2', { bridge: BRIDGE })
  await within(api.ready, 30000, 'api ready over long-poll')
  assert.equal(api.transport, 'longpoll')
  const echo = api.subscriptions.create({ channel: 'EchoChannel' }, mixin(ev, 'echo'))
  await ev.next(is('echo', 'connected'), 'echo over long-poll', 30000)
  await echo.perform('echo', { lp: true })
  assert.deepEqual((await ev.next((e) => is('echo', 'received')(e) && e.d.lp, 'echo over long-poll', 30000)).d, { lp: true, user: 'packlp2' })
  await api.disconnect()
  console.log('ok long-poll through the bridge')
}
process.exit(0)
`)
  assert.match(out, /ok consumer API\nok official client\nok long-poll through the bridge/)
})

test('Node 20: an install without its WebAssembly files fails at once with a clear error', async () => {
  const dist = join(app, 'node_modules', 'cableway', 'js', 'dist')
  for (const [file, message] of [
    ['wasm_exec.js', /cannot load Go's WebAssembly runtime .*wasm_exec\.js/],
    [wasmName(), /cannot read the WebAssembly module .*cableway\.[0-9a-f]{16}\.wasm: ENOENT/],
    ['wasm.js', /cannot load .*\/js\/dist\/wasm\.js, which names the WebAssembly module/],
  ]) {
    renameSync(join(dist, file), join(dist, `${file}.away`))
    try {
      const out = await node('broken-check.mjs', `
import 'cableway/node'
import * as ActionCable from '@rails/actioncable'
import { createConsumer, install, load } from 'cableway/node'
${prelude}
const expected = ${message}
await assert.rejects(within(load(), 10000, 'load'), expected)
const c = createConsumer(RAILS_WS + '?token=secret-broken')
await assert.rejects(within(c.ready, 10000, 'createConsumer ready'), expected)
// The drop-in: the socket reports an error and closes (the official
// client then retries on its own schedule). Authorised, so that Rails
// keeps it open: it opens before the instance would run (Rails would
// otherwise close it first, as it does a plain WebSocket).
install(ActionCable)
const ws = new ActionCable.adapters.WebSocket(RAILS_WS + '?token=secret-broken', ['actioncable-v1-json'])
const ev = new Events()
ws.onerror = (e) => ev.push({ key: 's', kind: 'error', d: e.message })
ws.onclose = (e) => ev.push({ key: 's', kind: 'close', d: e.code })
assert.match((await ev.next(is('s', 'error'), 'socket error')).d, expected)
assert.equal((await ev.next(is('s', 'close'), 'socket close')).d, 1006)
console.log('ok clear failure')
process.exit(0)
`, 30000)
      assert.match(out, /ok clear failure/)
    } finally {
      renameSync(join(dist, `${file}.away`), join(dist, file))
    }
  }
})

test('Node 20: the wasmModule option: a module compiled by the page is used, a failed one is reported and the next use compiles its own', async () => {
  const out = await node('module-check.mjs', `
import 'cableway/node'
import { readFileSync } from 'node:fs'
import { createConsumer, load } from 'cableway/node'
import { wasmURL } from 'cableway/wasm.js'
${prelude}
await assert.rejects(within(load({ wasmModule: 42 }), 10000, 'load with a number'), /the wasmModule option must be a WebAssembly.Module/)
await assert.rejects(within(load({ wasmModule: Promise.reject(new Error('boom')) }), 10000, 'load with a failed module'), /the page's WebAssembly module \\(the wasmModule option\\) failed: boom/)
// Given a module, the loader does not read wasmURL (which names nothing here).
await within(load({ wasmModule: WebAssembly.compile(readFileSync(wasmURL)), wasmURL: new URL('file:///nonexistent/cableway.wasm') }), 20000, 'load with a module')
const c = createConsumer(RAILS_WS + '?token=secret-packmod')
await within(c.ready, 20000, 'consumer ready')
await c.disconnect()
console.log('ok wasmModule')
process.exit(0)
`, 60000)
  assert.match(out, /ok wasmModule/)
})

test('Chromium: a page that imports the installed package chats through Rails', async () => {
  const wasm = `/node_modules/cableway/js/dist/${wasmName()}`
  writeFileSync(join(app, 'index.html'), `<!doctype html>
<meta charset="utf-8">
<script>self.cablewayModule = WebAssembly.compileStreaming(fetch('${wasm}'))</script>
<script type="importmap">
{ "imports": {
  "cableway": "/node_modules/cableway/js/index.js",
  "@rails/actioncable": "/node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js"
} }
</script>
<script type="module">
  import * as ActionCable from '@rails/actioncable'
  import { install, createConsumer } from 'cableway'
  window.H = { events: [] }
  const push = (e) => H.events.push(e)
  install(ActionCable, { wasmModule: self.cablewayModule })
  const c = ActionCable.createConsumer(new URLSearchParams(location.search).get('cable'))
  H.chat = c.subscriptions.create({ channel: 'ChatChannel', room: 'pack-page' }, {
    connected: () => push({ kind: 'connected', transport: c.connection.webSocket.transport }),
    received: (d) => push({ kind: 'received', d }),
  })
  const api = createConsumer(new URLSearchParams(location.search).get('cable'))
  api.ready.then(() => push({ kind: 'api ready', transport: api.transport }), (e) => push({ kind: 'api failed', d: e.message }))
  H.ready = true
</script>`)
  browser = await launch()
  const page = await browser.page(`${site.url}/index.html?cable=${encodeURIComponent(`${rails.ws}?token=secret-packpage`)}`)
  const take = (kind) => page.waitForFunction((k) => {
    const i = H.events.findIndex((e) => e.kind === k)
    return i >= 0 && H.events.splice(i, 1)[0]
  }, kind, { timeout: 30000, polling: 20 }).then((h) => h.jsonValue())
  assert.deepEqual(await take('connected'), { kind: 'connected', transport: 'websocket' })
  assert.deepEqual(await take('api ready'), { kind: 'api ready', transport: 'websocket' })
  await page.evaluate(() => H.chat.perform('speak', { text: 'from a page' }))
  assert.deepEqual((await take('received')).d, { user: 'packpage', text: 'from a page', room: 'pack-page' })
  assert.deepEqual(page.errors.map(String), [])
  // The module the page compiled from <head> is the one that runs: the
  // .wasm was fetched once.
  assert.deepEqual(await page.evaluate(() => performance.getEntriesByType('resource').filter((e) => e.name.endsWith('.wasm')).map((e) => new URL(e.name).pathname)), [wasm])
  await page.close()
})
