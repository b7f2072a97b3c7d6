// What the browser benchmarks serve: the npm package as a user installs it
// (`npm pack`, which builds the wasm on prepack, then unpacked), the
// official client, and the pages the benchmarks write, on 127.0.0.1.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { extname, join, normalize, sep } from 'node:path'
import { promisify } from 'node:util'
import { root } from '../test/helpers.mjs'

const run = promisify(execFile)

/**
 * Packs the package into a temporary folder and unpacks it; resolves to
 * {dir (the package's root), close()}. CABLEWAY_BENCH_PACKAGE names an
 * unpacked package to use instead (e.g. an earlier version's, to compare).
 */
export async function packed() {
  if (process.env.CABLEWAY_BENCH_PACKAGE) return { dir: process.env.CABLEWAY_BENCH_PACKAGE, close: async () => {} }
  const tmp = await mkdtemp(join(tmpdir(), 'cableway-bench-'))
  try {
    await run('npm', ['pack', '--pack-destination', tmp, '--no-audit', '--no-fund'], { cwd: root, maxBuffer: 1 << 24 })
    const tgz = (await readdir(tmp)).find((f) => f.endsWith('.tgz'))
    await run('tar', ['xzf', join(tmp, tgz), '-C', tmp])
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
  return { dir: join(tmp, 'package'), close: () => rm(tmp, { recursive: true, force: true }) }
}

const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html; charset=utf-8' }

/** What js/README.md tells users to serve a content-hashed .wasm with. */
export const immutable = 'public, max-age=31536000, immutable'
const hashed = /\/cableway\.[0-9a-f]{16}\.wasm$/

/**
 * Serves on 127.0.0.1: /cableway/… the package at pkg, /actioncable.js the
 * official client (8.x) of this checkout, /<name>.html the HTML that
 * pages[name](searchParams) returns, and /base/… the package at base if
 * given (another version, to compare). Files carry an ETag and
 * `cache-control: no-cache` (a warm visit revalidates each, 304), but the
 * content-hashed .wasm under /cableway/ and /base/, served as js/README.md
 * says (`immutable`: a warm visit takes it from the cache without asking).
 * /cableway-revalidate/… is the package at pkg with every file no-cache,
 * the .wasm too (as before it had a hashed name).
 */
export async function serve(pkg, pages = {}, base) {
  const mounts = [
    ['/cableway/', normalize(pkg + sep), true],
    ['/cableway-revalidate/', normalize(pkg + sep), false],
    ...(base ? [['/base/', normalize(base + sep), true]] : []),
    ['/actioncable.js', join(root, 'node_modules', '@rails', 'actioncable', 'app', 'assets', 'javascripts', 'actioncable.js')],
  ]
  const etags = new Map()
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x')
    const name = /^\/([\w-]+)\.html$/.exec(url.pathname)?.[1]
    if (name && pages[name]) {
      // Cross-origin isolated: performance.now() then counts in µs, not
      // in the 100 µs steps of other pages.
      res.writeHead(200, {
        'content-type': types['.html'], 'cache-control': 'no-store',
        'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp',
      })
      return res.end(pages[name](url.searchParams))
    }
    const m = mounts.find(([prefix]) => url.pathname.startsWith(prefix))
    if (!m) return res.writeHead(404).end()
    const file = m[0].endsWith('/') ? normalize(join(m[1], decodeURIComponent(url.pathname.slice(m[0].length)))) : m[1]
    if (m[0].endsWith('/') && !file.startsWith(m[1])) return res.writeHead(403).end()
    try {
      const st = await stat(file)
      let tag = etags.get(file)
      if (!tag || tag.mtime !== st.mtimeMs) {
        tag = { mtime: st.mtimeMs, etag: `"${createHash('sha1').update(await readFile(file)).digest('hex')}"` }
        etags.set(file, tag)
      }
      const cache = m[2] && hashed.test(file) ? immutable : 'no-cache'
      const headers = { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'cache-control': cache, etag: tag.etag }
      if (req.headers['if-none-match'] === tag.etag) return res.writeHead(304, headers).end()
      res.writeHead(200, { ...headers, 'content-length': st.size })
      res.end(await readFile(file))
    } catch {
      res.writeHead(404).end()
    }
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r) }),
  }
}

/** Chromium's flags for the benchmarks (as js/test/chromium.mjs). */
export const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']

export const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b)
  return s.length ? s[s.length >> 1] : NaN
}
