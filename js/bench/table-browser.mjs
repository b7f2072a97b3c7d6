// The browser part of the bench table (internal/bench/table): headless
// Chromium with the official @rails/actioncable 8 client, on the native
// WebSocket (plain) and on cableway's drop-in (cable), both reading the Go
// feed given (internal/bench/feeder) through js/test/harness.html.
//
//   node js/bench/table-browser.mjs ws://127.0.0.1:PORT/cable [FRAMES ECHOES ROUNDS]
//
// Per round, plain then cable: receive FRAMES messages (flood; rate from
// the subscription's connection to the last message) and ECHOES echo
// round trips in a row (p50, p99, mean). Also cableway.load() in the first
// page of a fresh profile (fetch + compile + start of the wasm, served
// without caching) and a warm instantiate (a new Go instance from the
// compiled module), median of 5, and the wasm's size raw and brotli'd
// (quality 11). Prints one JSON line of raw figures; the table takes the
// medians.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { brotliCompressSync, constants } from 'node:zlib'
import { serve } from '../../examples/browser/serve.mjs'
import { launch } from '../test/chromium.mjs'
import { root } from '../test/helpers.mjs'

const [url, framesArg = '100000', echoesArg = '2000', roundsArg = '3'] = process.argv.slice(2)
const frames = Number(framesArg), echoes = Number(echoesArg), rounds = Number(roundsArg)
if (!url?.startsWith('ws://') || ![frames, echoes, rounds].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('usage: table-browser.mjs ws://HOST:PORT/cable [FRAMES ECHOES ROUNDS] (positive integers)\n')
  process.exit(2)
}

const wasm = readFileSync(join(root, 'js', 'dist', 'cableway.wasm'))
const wasmBytes = wasm.length
const wasmBrotliBytes = brotliCompressSync(wasm, {
  params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: wasm.length },
}).length

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const site = await serve({ dir: root })
const browser = await launch()
const out = { chromium: browser.context.browser()?.version() ?? null, frames, echoes, rounds, wasmBytes, wasmBrotliBytes }
try {
  // The cable page first: its load() is the fresh profile's first.
  const cable = await browser.page(`${site.url}/js/test/harness.html?lib=8&mode=cable`)
  const plain = await browser.page(`${site.url}/js/test/harness.html?lib=8&mode=plain`)
  const pages = { plain, cable }
  out.coldLoadMs = await cable.evaluate(() => H.coldLoadMs)

  // Warm up both paths, then alternate so that drift hits both alike.
  for (const p of Object.values(pages)) {
    await p.evaluate(([u]) => H.recv(u, 20000), [url])
    await p.evaluate(([u]) => H.echo(u, 200), [url])
  }
  out.recv = { plain: [], cable: [] }
  out.echo = { plain: [], cable: [] }
  for (let r = 0; r < rounds; r++) {
    for (const [mode, p] of Object.entries(pages)) {
      const res = await p.evaluate(([u, n]) => H.recv(u, n), [url, frames])
      if (res.count !== frames) throw new Error(`${mode}: received ${res.count} of ${frames}`)
      out.recv[mode].push(res.rate)
      const e = await p.evaluate(([u, n]) => H.echo(u, n), [url, echoes])
      out.echo[mode].push({ p50Ms: e.p50Ms, p99Ms: e.p99Ms, meanMs: e.meanMs })
    }
  }
  // Last, as it replaces the page's Go instance: crash() (loader.js's, for
  // tests) ends it, and load() starts a new one from the compiled module.
  const warm = []
  for (let i = 0; i < 5; i++) {
    warm.push(await cable.evaluate(async () => {
      const { crash } = await import('/js/loader.js')
      await crash()
      await new Promise((r) => setTimeout(r, 50)) // let the exit be seen
      const t = performance.now()
      await H.cableway.load()
      return performance.now() - t
    }))
  }
  out.warmInstantiateMs = median(warm)
  for (const [mode, p] of Object.entries(pages)) {
    if (p.errors.length) throw new Error(`${mode} page: ${p.errors.join('; ')}`)
  }
} finally {
  await browser.close()
  await site.close()
}
process.stdout.write(JSON.stringify(out) + '\n')
