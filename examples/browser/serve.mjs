// A tiny static file server for the browser example and the tests.
//   node examples/browser/serve.mjs [PORT]   → http://127.0.0.1:PORT/examples/browser/
// It serves the repository root (the page, js/ with js/dist/cableway.<hash>.wasm,
// and node_modules/@rails/actioncable), read-only, to 127.0.0.1 only.
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createServer } from 'node:http'
import { extname, join, normalize, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.css': 'text/css',
  '.map': 'application/json',
}

/** Serves dir on 127.0.0.1:port (0: any free port); resolves to {url, close}. */
export function serve({ dir = fileURLToPath(new URL('../..', import.meta.url)), port = 0 } = {}) {
  const root = normalize(dir + sep)
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname)
    let file = normalize(join(root, path))
    if (!file.startsWith(root) || file.split(sep).includes('.git')) return end(res, 403)
    try {
      let st = await stat(file)
      if (st.isDirectory()) st = await stat((file = join(file, 'index.html')))
      res.writeHead(200, {
        'content-type': types[extname(file)] ?? 'application/octet-stream',
        'content-length': st.size,
        // cableway's .wasm is named by its content (js/build.mjs): it never
        // changes under that name, so browsers need not even revalidate it.
        'cache-control': /\/cableway\.[0-9a-f]{16}\.wasm$/.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache',
      })
      createReadStream(file).pipe(res)
    } catch {
      end(res, 404)
    }
  })
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}`
      resolve({ url, server, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r) }) })
    })
  })
}

function end(res, code) {
  res.writeHead(code, { 'content-type': 'text/plain' })
  res.end(`${code}\n`)
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { url } = await serve({ port: Number(process.argv[2] ?? 8000) })
  console.log(`serving ${url}/examples/browser/ (the Rails app: examples/rails/run 3000)`)
}
