// Echo round trip in Chromium: @rails/actioncable 8 with its own WebSocket
// (plain) and with cableway's drop-in (cable), the package as packed, on the
// same Node `ws` feed (js/bench/feed.mjs) on 127.0.0.1. Each round times
// BENCH_ECHOES sequential `perform('echo')` → `received` round trips, the
// next sent from the previous one's `received` (which reads the message's
// number, as a user would); rounds alternate plain and cable. Run after
// `npm run build` (it packs the package itself):
//
//   node js/bench/rtt.mjs     # BENCH_ROUNDS (5), BENCH_ECHOES (2000); BENCH_JSON=1: one JSON line too
//
// CABLEWAY_BENCH_BASE=<unpacked package> adds a third page, base: the
// drop-in of that package (e.g. an earlier version), in the same rounds.
//
// Printed: the medians over the rounds of each round's median and mean
// round trip, and cable ÷ plain (the issue's target: ≤ 1.3×).
import { chromium } from 'playwright-core'
import { launch } from '../test/chromium.mjs'
import { startFeed } from './feed.mjs'
import { median, packed, serve } from './site.mjs'

const rounds = Number(process.env.BENCH_ROUNDS ?? 5)
const echoes = Number(process.env.BENCH_ECHOES ?? 2000)

const page = (mode) => `<!doctype html>
<meta charset="utf-8">
<title>rtt ${mode}</title>
<script src="/actioncable.js"></script>
<script type="module">
${mode === 'plain' ? '' : `import { install } from '/${mode === 'base' ? 'base' : 'cableway'}/js/index.js'\ninstall(ActionCable)`}
window.H = {
  // count sequential echo round trips on a new consumer; resolves to the
  // round trips in ms.
  echo(url, count) {
    const consumer = ActionCable.createConsumer(url)
    const rtts = []
    return new Promise((resolve, reject) => {
      let t
      const sub = consumer.subscriptions.create({ channel: 'Bench' }, {
        connected() { t = performance.now(); sub.perform('echo', { i: 0 }) },
        received(d) {
          const now = performance.now()
          if (d.i !== rtts.length) return reject(new Error('echo ' + d.i + ' came for ' + rtts.length))
          rtts.push(now - t)
          if (rtts.length === count) return resolve(rtts)
          t = performance.now()
          sub.perform('echo', { i: rtts.length })
        },
      })
    }).finally(() => consumer.disconnect())
  },
}
window.H.ready = true
</script>`

const pkg = await packed()
const feed = await startFeed()
const base = process.env.CABLEWAY_BENCH_BASE // another unpacked package, to compare: mode base
const site = await serve(pkg.dir, { rtt: (q) => page(q.get('mode')) }, base)
const browser = await launch()
const res = { plain: { p50: [], mean: [] }, cable: { p50: [], mean: [] } }
if (base) res.base = { p50: [], mean: [] }
try {
  const pages = {}
  for (const mode of Object.keys(res)) pages[mode] = await browser.page(`${site.url}/rtt.html?mode=${mode}`)
  for (const p of Object.values(pages)) await p.evaluate(([u, n]) => H.echo(u, n), [feed.url, Math.min(echoes, 500)]) // warm-up
  for (let r = 0; r < rounds; r++) {
    const order = Object.entries(pages)
    for (const [mode, p] of r % 2 ? order.reverse() : order) {
      const rtts = await p.evaluate(([u, n]) => H.echo(u, n), [feed.url, echoes])
      res[mode].p50.push(median(rtts) * 1000)
      res[mode].mean.push((rtts.reduce((a, b) => a + b, 0) / rtts.length) * 1000)
    }
  }
  for (const [mode, p] of Object.entries(pages)) if (p.errors.length) throw new Error(`${mode}: ${p.errors.join('; ')}`)
} finally {
  await browser.close()
  await site.close()
  await feed.close()
  await pkg.close()
}

const us = (x) => `${x.toFixed(0)} µs`
const out = {}
for (const [mode, r] of Object.entries(res)) out[mode] = { p50Us: median(r.p50), meanUs: median(r.mean) }
console.log(`Chromium ${chromium.name()}: echo round trip, ${echoes} in a row per round, ${rounds} alternating rounds (medians of the rounds)`)
for (const [mode, r] of Object.entries(res)) {
  console.log(`${mode.padEnd(6)} median ${us(out[mode].p50Us).padStart(7)}, mean ${us(out[mode].meanUs).padStart(7)}  [medians ${r.p50.map((x) => x.toFixed(0)).join(', ')}]`)
}
const ratio = out.cable.p50Us / out.plain.p50Us
console.log(`cable ÷ plain: median ${ratio.toFixed(2)}×, mean ${(out.cable.meanUs / out.plain.meanUs).toFixed(2)}× (target ≤ 1.3×)`)
if (base) console.log(`base ÷ plain: median ${(out.base.p50Us / out.plain.p50Us).toFixed(2)}×, mean ${(out.base.meanUs / out.plain.meanUs).toFixed(2)}× (${base})`)
if (process.env.BENCH_JSON) console.log(JSON.stringify({ rtt: { ...out, ratioP50: ratio, ratioMean: out.cable.meanUs / out.plain.meanUs, echoes, rounds } }))
