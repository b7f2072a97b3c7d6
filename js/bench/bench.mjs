// npm run bench: the numbers in js/README.md.
//   - cableway.wasm size: raw, gzip -9, brotli q11
//   - Chromium: cold load (fetch + compile + start) and warm instantiate
//     (a fresh instance from the compiled module)
//   - Chromium, @rails/actioncable 8.x on the same Node `ws` feed: receive
//     rate and echo round trip, plain WebSocket vs CableSocket
// Env: BENCH_FRAMES (default 100000), BENCH_ECHOES (2000), BENCH_ROUNDS (3).
// The same page, served from this checkout. What a user's page pays, with
// the package as packed: js/bench/startup.mjs (cold and warm start to the
// first `connected`) and js/bench/rtt.mjs (echo round trip, µs timers);
// js/bench/wasmsize.mjs says what each Go package costs in the .wasm.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { serve } from '../../examples/browser/serve.mjs'
import { launch } from '../test/chromium.mjs'
import { root } from '../test/helpers.mjs'
import { startFeed } from './feed.mjs'

const frames = Number(process.env.BENCH_FRAMES ?? 100000)
const echoes = Number(process.env.BENCH_ECHOES ?? 2000)
const rounds = Number(process.env.BENCH_ROUNDS ?? 3)

const wasm = readFileSync(join(root, 'js', 'dist', 'cableway.wasm'))
const kb = (n) => `${(n / 1024).toFixed(0)} KiB (${(n / 1e6).toFixed(2)} MB)`
const gz = gzipSync(wasm, { level: 9 }).length
const br = brotliCompressSync(wasm, {
  params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: wasm.length },
}).length
console.log(`cableway.wasm: raw ${kb(wasm.length)}, gzip ${kb(gz)}, brotli ${kb(br)} (target ≤ 1.3 MB brotli)`)

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const site = await serve({ dir: root })
const feed = await startFeed()
const browser = await launch()
try {
  const pages = {
    plain: await browser.page(`${site.url}/js/test/harness.html?lib=8&mode=plain`),
    cable: await browser.page(`${site.url}/js/test/harness.html?lib=8&mode=cable`),
  }
  const cold = await pages.cable.evaluate(() => H.coldLoadMs)
  const warm = []
  for (let i = 0; i < 5; i++) warm.push(await pages.cable.evaluate(() => H.warmInstantiate()))
  console.log(`Chromium: cold load ${cold.toFixed(1)} ms (fetch + compile + start), warm instantiate ${median(warm).toFixed(1)} ms (median of 5)`)

  // Warm up both paths, then alternate rounds so drift hits both alike.
  for (const p of Object.values(pages)) await p.evaluate(([u]) => H.recv(u, 20000), [feed.url])
  const rate = { plain: [], cable: [] }
  const rtt = { plain: [], cable: [] }
  const p50 = { plain: [], cable: [] }
  for (let r = 0; r < rounds; r++) {
    for (const [mode, p] of Object.entries(pages)) {
      const res = await p.evaluate(([u, n]) => H.recv(u, n), [feed.url, frames])
      if (res.count !== frames) throw new Error(`${mode}: received ${res.count} of ${frames}`)
      rate[mode].push(res.rate)
      const e = await p.evaluate(([u, n]) => H.echo(u, n), [feed.url, echoes])
      rtt[mode].push(e.meanMs)
      p50[mode].push(e.p50Ms)
    }
  }
  const rp = median(rate.plain), rc = median(rate.cable)
  const ep = median(rtt.plain), ec = median(rtt.cable)
  console.log(`receive ${frames} frames: plain WebSocket ${rp.toFixed(0)}/s, CableSocket ${rc.toFixed(0)}/s → ${(rc / rp).toFixed(2)}× (target ≥ 0.7×)`)
  const pp = median(p50.plain), pc = median(p50.cable)
  console.log(`echo round trip (${echoes} in a row), mean: plain ${(ep * 1000).toFixed(0)} µs, CableSocket ${(ec * 1000).toFixed(0)} µs → ${(ec / ep).toFixed(2)}× (target ≤ 1.3×); median: ${(pp * 1000).toFixed(0)} vs ${(pc * 1000).toFixed(0)} µs → ${(pc / pp).toFixed(2)}×`)
  console.log(`  rounds: rate plain ${rate.plain.map((x) => x.toFixed(0))}, cable ${rate.cable.map((x) => x.toFixed(0))}; rtt µs plain ${rtt.plain.map((x) => (x * 1000).toFixed(0))}, cable ${rtt.cable.map((x) => (x * 1000).toFixed(0))}`)
} finally {
  await browser.close()
  await feed.close()
  await site.close()
}
