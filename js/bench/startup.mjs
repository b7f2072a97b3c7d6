// Cold start in Chromium: how long after @rails/actioncable has loaded a
// page's subscription is `connected`, with the official client's own
// WebSocket (plain) and with cableway's drop-in (cable), on a cold HTTP
// cache (a fresh profile) and a warm one (the same profile, a new browser,
// as a return visit). Run after `npm run build`:
//
//   node js/bench/startup.mjs            # BENCH_ROUNDS (default 5) alternating rounds
//
// The page is what a user writes: the official client's script, then a
// module that imports the package (js/index.js as packed), installs the
// drop-in, creates a consumer and subscribes; the drop-in page carries the
// module hints js/README.md documents. The feed is js/bench/feed.mjs (a
// Node `ws` ActionCable peer) on 127.0.0.1. Files are served with an ETag
// and `cache-control: no-cache` (a warm visit revalidates each file, 304),
// but the hashed .wasm (see site.mjs).
//
// Modes (BENCH_MODES, default plain,cable): plain, cable (the content-
// hashed .wasm served `immutable`, the module hints, as js/README.md
// says), cable-head (the .wasm compiled from <head> and handed to
// install(), as js/README.md said before the first socket opened without
// the instance), cable-preload (a <link rel=preload> of the .wasm, as it
// said before that), cable-revalidate (the .wasm served no-cache,
// revalidated on a warm visit), cable-nopreload (no hints at all) and base
// (the drop-in from the unpacked package CABLEWAY_BENCH_BASE names, e.g.
// an earlier version, with its documented hints).
//
// Printed: medians over the rounds of the time from ActionCable loaded to
// the first `connected` (and from navigation start), and for the drop-in
// where it went (see phases below). BENCH_JSON=1 also prints one JSON line
// for js/bench/table*.
import { readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { chromiumPath } from '../test/chromium.mjs'
import { startFeed } from './feed.mjs'
import { chromiumArgs, median, packed, serve } from './site.mjs'

const rounds = Number(process.env.BENCH_ROUNDS ?? 5)
// V8 writes a WebAssembly module's compiled code to the HTTP cache once it
// has settled (tiered up, or a couple of seconds after the last
// compilation); a return visit comes later than that.
const settleMs = Number(process.env.BENCH_SETTLE_MS ?? 4000)

// hints are the hints js/README.md documents, for the package served at
// pkg: every module of the package (a module's imports are otherwise
// fetched only once it has arrived), and with preloadWasm the .wasm too
// (as documented before: Chromium then does not use its compiled code on
// a return visit, see the `code cache` figure).
const hints = (pkg, wasm, preloadWasm) => [
  ...(preloadWasm ? [`<link rel="preload" href="${wasm}" as="fetch" type="application/wasm" crossorigin>`] : []),
  ...['index.js', 'socket.js', 'loader.js', 'consumer.js', 'dist/wasm.js', 'dist/wasm_exec.js'].map((f) => `<link rel="modulepreload" href="${pkg}/js/${f}">`),
].join('\n')

// wasmFile returns the name of the .wasm in the unpacked package at dir:
// the content-hashed one, or cableway.wasm (an earlier version's).
const wasmFile = (dir) => readdirSync(join(dir, 'js', 'dist')).find((f) => /^cableway\.[0-9a-f]+\.wasm$/.test(f)) ?? 'cableway.wasm'

// The pages, by mode: the package's mount, whether the page has the
// module hints, whether it preloads the .wasm, and whether an inline
// script in <head> starts compiling it (compileStreaming on a fetch, handed
// to install() as wasmModule).
const modePages = {
  cable: { pkg: '/cableway', hints: true }, // as js/README.md says: the module hints; install() starts the fetch
  'cable-head': { pkg: '/cableway', hints: true, inline: true }, // the page js/README.md described before: the .wasm compiled from <head>
  'cable-preload': { pkg: '/cableway', hints: true, preloadWasm: true }, // the page js/README.md described before that
  'cable-revalidate': { pkg: '/cableway-revalidate', hints: true }, // the .wasm served no-cache
  'cable-nopreload': { pkg: '/cableway' }, // no hints at all
  base: { pkg: '/base', hints: true, preloadWasm: true }, // an earlier version, with its documented hints
}

// page returns the HTML of a test page for mode (plain or one of
// modePages).
function page(mode, feedURL, wasm) {
  const cable = modePages[mode]
  if (mode !== 'plain' && !cable) throw new Error(`unknown mode ${mode}`)
  const file = cable && `${cable.pkg}/js/dist/${wasm[mode === 'base' ? 'base' : 'pkg']}`
  return `<!doctype html>
<meta charset="utf-8">
<title>startup ${mode}</title>
${cable?.hints ? hints(cable.pkg, file, cable.preloadWasm) : ''}
${cable?.inline ? `<script>self.cablewayModule = WebAssembly.compileStreaming(fetch('${file}'))</script>` : ''}
<script src="/actioncable.js"></script>
<script>performance.mark('actioncable')</script>
<script type="module">
${cable ? `import { install } from '${cable.pkg}/js/index.js'\ninstall(ActionCable${cable.inline ? ', { wasmModule: self.cablewayModule }' : ''})` : ''}
const consumer = ActionCable.createConsumer(${JSON.stringify(feedURL)})
consumer.subscriptions.create({ channel: 'Bench' }, {
  connected() {
    performance.mark('connected')
    const at = (name) => performance.getEntriesByName(name)[0]?.startTime
    window.result = { actioncable: at('actioncable'), connected: at('connected') }
  },
})
</script>`
}

// Timing of the drop-in's phases, from the page's side: the wasm's fetch
// (Resource Timing), compileStreaming/instantiate, and Go's run up to its
// boot callback (wrapping what wasm_exec.js defines).
const probe = () => {
  const t = (window.phases = {})
  const wrap = (obj, name, key) => {
    const f = obj[name]
    obj[name] = function (...args) {
      const s = performance.now()
      t[key + 'Start'] ??= s
      const r = f.apply(this, args)
      Promise.resolve(r).then(() => { t[key + 'End'] ??= performance.now() }, () => {})
      return r
    }
  }
  wrap(WebAssembly, 'compileStreaming', 'compile')
  wrap(WebAssembly, 'compile', 'compile')
  wrap(WebAssembly, 'instantiate', 'instantiate')
  const WS = globalThis.WebSocket
  globalThis.WebSocket = class extends WS {
    constructor(...args) {
      super(...args)
      t.wsNew ??= performance.now()
      this.addEventListener('open', () => { t.wsOpen ??= performance.now() })
      this.addEventListener('message', () => { if (t.wsMsg1) t.wsMsg2 ??= performance.now(); else t.wsMsg1 = performance.now() })
    }

    send(data) {
      t.wsSend ??= performance.now()
      return super.send(data)
    }
  }
  let Go
  Object.defineProperty(globalThis, 'Go', {
    configurable: true,
    get: () => Go,
    set(v) {
      Go = v
      const run = v.prototype.run
      v.prototype.run = function (instance) {
        t.runStart ??= performance.now()
        const r = run.call(this, instance) // returns once main waits
        t.runEnd ??= performance.now()
        return r
      }
    },
  })
}

// trace starts recording V8's WebAssembly trace events of page p (light:
// one category); stop() resolves to {codeCache, lazyMs}: whether the
// module came from Chromium's code cache (V8 deserialized it instead of
// compiling: the cache is keyed by the .wasm's URL and response time, and
// written once V8 has settled on a visit), and the main thread's time in
// lazy compilation (V8 compiles a function when it is first called).
async function trace(context, p) {
  const cdp = await context.newCDPSession(p)
  const events = []
  cdp.on('Tracing.dataCollected', (d) => events.push(...d.value))
  const complete = new Promise((res) => cdp.once('Tracing.tracingComplete', res))
  await cdp.send('Tracing.start', { traceConfig: { includedCategories: ['v8.wasm'] }, transferMode: 'ReportEvents' })
  return {
    async stop() {
      await cdp.send('Tracing.end')
      await complete
      const sum = (name) => events.filter((e) => e.name === name).reduce((n, e) => n + (e.dur ?? 0) / 1000, 0)
      return { codeCache: events.some((e) => e.name === 'wasm.Deserialize'), lazyMs: sum('wasm.CompileLazy') }
    },
  }
}

// visit opens url in a new browser on profile dir, waits for the first
// `connected`, and returns the page's figures.
async function visit(dir, url) {
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: chromiumPath,
    headless: true,
    args: [...chromiumArgs, ...(process.env.BENCH_CHROMIUM_ARGS?.split(' ').filter(Boolean) ?? [])],
  })
  try {
    await context.addInitScript(probe)
    const p = context.pages()[0] ?? (await context.newPage())
    const errors = []
    p.on('pageerror', (e) => errors.push(e))
    const tracing = await trace(context, p)
    await p.goto(url)
    await p.waitForFunction(() => window.result, null, { timeout: 30000 }).catch((err) => {
      throw new Error(`${url}: no connected within 30 s${errors.length ? `: ${errors.join('; ')}` : ''}`, { cause: err })
    })
    const r = await p.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0]
      const wasm = performance.getEntriesByType('resource').find((e) => e.name.endsWith('.wasm'))
      return {
        ...window.result,
        ...window.phases,
        navStart: nav.startTime,
        wasmFetchStart: wasm?.fetchStart,
        wasmResponseStart: wasm?.responseStart,
        wasmFetchEnd: wasm?.responseEnd,
        wasmStatus: wasm?.responseStatus,
        wasmBytes: wasm?.transferSize,
      }
    })
    Object.assign(r, await tracing.stop())
    await new Promise((res) => setTimeout(res, settleMs)) // see settleMs
    return r
  } finally {
    await context.close()
  }
}

const ms = (x) => (Number.isNaN(x) ? '–' : `${x.toFixed(0)} ms`)

const pkg = await packed()
const feed = await startFeed()
const base = process.env.CABLEWAY_BENCH_BASE
const wasm = { pkg: wasmFile(pkg.dir), base: base && wasmFile(base) }
const site = await serve(pkg.dir, { startup: (q) => page(q.get('mode'), feed.url, wasm) }, base)
const modes = (process.env.BENCH_MODES ?? 'plain,cable').split(',')
const runs = {} // `${mode} ${cache}` → [figures]
try {
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      const dir = await mkdtemp(join(tmpdir(), 'cableway-startup-'))
      try {
        const url = `${site.url}/startup.html?mode=${mode}`
        for (const cache of ['cold', 'warm']) (runs[`${mode} ${cache}`] ??= []).push(await visit(dir, url))
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    }
  }
} finally {
  await site.close()
  await feed.close()
  await pkg.close()
}

console.log(`Chromium ${chromium.name()} (${chromiumPath}), ${rounds} alternating rounds, medians; "loaded" = @rails/actioncable's script ran`)
const out = {}
for (const [key, list] of Object.entries(runs)) {
  const fromLoaded = median(list.map((x) => x.connected - x.actioncable))
  const fromNav = median(list.map((x) => x.connected))
  out[key] = { fromLoadedMs: fromLoaded, fromNavigationMs: fromNav, rounds: list.map((x) => +(x.connected - x.actioncable).toFixed(1)) }
  let line = `${key.padEnd(22)} connected ${ms(fromLoaded).padStart(7)} after loaded, ${ms(fromNav).padStart(7)} after navigation start  [${out[key].rounds.join(', ')}]`
  if (!key.startsWith('plain')) {
    const ph = (a, b) => median(list.map((x) => x[b] - x[a]))
    line += `\n${''.padEnd(22)} phases: wasm fetch ${ms(ph('wasmFetchStart', 'wasmFetchEnd'))} (status ${list[0].wasmStatus}, ${list[0].wasmBytes} B over the wire)` +
      `, compiled code from the cache in ${list.filter((x) => x.codeCache).length} of ${list.length}` +
      `, compile ${ms(ph('compileStart', 'compileEnd'))}, instantiate ${ms(ph('instantiateStart', 'instantiateEnd'))}` +
      `, Go start ${ms(ph('runStart', 'runEnd'))} (lazy compilation ${ms(median(list.map((x) => x.lazyMs)))})` +
      `, Go started → connected ${ms(ph('runEnd', 'connected'))}` +
      `; loaded → fetch start ${ms(ph('actioncable', 'wasmFetchStart'))}` +
      `\n${''.padEnd(22)} timeline from loaded: ` +
      [['wasm fetch', 'wasmFetchStart'], ['first byte', 'wasmResponseStart'], ['compile', 'compileStart'], ['last byte', 'wasmFetchEnd'],
        ['compiled', 'compileEnd'], ['Go run', 'runStart'], ['Go started', 'runEnd'], ['socket', 'wsNew'], ['open', 'wsOpen'], ['connected', 'connected']]
        .map(([name, key]) => `${name} ${ms(ph('actioncable', key))}`).join(', ')
  }
  const ph = (a, b) => median(list.map((x) => x[b] - x[a]))
  line += `\n${''.padEnd(22)} socket: loaded → new WebSocket ${ms(ph('actioncable', 'wsNew'))}, → open ${ms(ph('wsNew', 'wsOpen'))}, → welcome ${ms(ph('wsOpen', 'wsMsg1'))}, → subscribe sent ${ms(ph('wsMsg1', 'wsSend'))}, → confirm ${ms(ph('wsSend', 'wsMsg2'))}, → connected ${ms(ph('wsMsg2', 'connected'))}`
  console.log(line)
}
for (const cache of ['cold', 'warm']) {
  const p = out[`plain ${cache}`], c = out[`cable ${cache}`]
  if (p && c) console.log(`${cache}: drop-in − native = ${ms(c.fromLoadedMs - p.fromLoadedMs)} (target: drop-in ≤ 150 ms after loaded, warm)`)
}
if (process.env.BENCH_JSON) console.log(JSON.stringify({ startup: out }))
// BENCH_DETAIL=1: each visit's timeline from loaded, to see where a slow
// round went (medians of phases come from different rounds).
if (process.env.BENCH_DETAIL) {
  const keys = ['navStart', 'wasmFetchStart', 'wasmFetchEnd', 'compileStart', 'compileEnd', 'instantiateStart', 'instantiateEnd', 'runStart', 'runEnd', 'wsNew', 'wsOpen', 'wsMsg1', 'wsSend', 'wsMsg2', 'connected']
  for (const [key, list] of Object.entries(runs)) {
    for (const x of list) console.log(`${key.padEnd(12)} ` + keys.filter((k) => x[k] !== undefined).map((k) => `${k} ${(x[k] - x.actioncable).toFixed(0)}`).join(', ') + ` (actioncable at ${x.actioncable.toFixed(0)}, lazy ${x.lazyMs?.toFixed(0)} ms)`)
  }
}
