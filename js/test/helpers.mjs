// Shared test helpers: the example Rails app, the Cableway bridge, servers
// that block WebSockets, free ports, waiting on events.
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer as createHTTPServer, request as httpRequest } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** Resolves to a free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Resolves when cond() is truthy, polling every 20 ms; rejects after ms. */
export async function until(cond, ms = 10000, what = 'condition') {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** A queue of values that can be awaited one by one with a deadline. */
export class Events {
  constructor() {
    this.items = []
    this.waiters = []
  }

  push(v) {
    const w = this.waiters.findIndex((w) => w.match(v))
    if (w >= 0) return this.waiters.splice(w, 1)[0].resolve(v)
    this.items.push(v)
  }

  /** Resolves with the first value (past or future) matching match. */
  next(match = () => true, ms = 10000, what = 'event') {
    const i = this.items.findIndex(match)
    if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0])
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (v) => { clearTimeout(t); resolve(v) } }
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
      }, ms)
      this.waiters.push(w)
    })
  }
}

/**
 * Starts examples/rails/run on a free port and waits for /health. Returns
 * {port, http, ws, post, stop}; stop() kills the process group.
 */
export async function startRails() {
  const port = await freePort()
  const proc = spawn(join(root, 'examples', 'rails', 'run'), [String(port)], {
    detached: true, // its own process group, killed as one
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RAILS_LOG_LEVEL: process.env.RAILS_LOG_LEVEL ?? 'warn' },
  })
  let log = ''
  proc.stdout.on('data', (d) => { log += d })
  proc.stderr.on('data', (d) => { log += d })
  let exited = false
  proc.on('exit', () => { exited = true })
  const http = `http://127.0.0.1:${port}`
  try {
    await until(async () => {
      if (exited) throw new Error(`rails exited:\n${log}`)
      try {
        return (await fetch(`${http}/health`)).ok
      } catch {
        return false
      }
    }, 30000, 'rails /health')
  } catch (err) {
    stop()
    throw err
  }
  function stop() {
    if (exited) return
    try {
      process.kill(-proc.pid, 'SIGKILL')
    } catch {}
  }
  async function post(path, body) {
    const r = await fetch(`${http}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) })
    if (!r.ok) throw new Error(`POST ${path}: HTTP ${r.status}`)
  }
  return { port, http, ws: `ws://127.0.0.1:${port}/cable`, post, stop, log: () => log }
}

/**
 * Globals @rails/actioncable expects of a browser (under Node): self,
 * document and (add|remove)EventListener.
 */
export function browserGlobals() {
  globalThis.self ??= globalThis
  globalThis.document ??= { visibilityState: 'visible', addEventListener() {}, removeEventListener() {} }
  globalThis.addEventListener ??= () => {}
  globalThis.removeEventListener ??= () => {}
}

let bridgeBinary // Promise<string>: the cableway binary, built once per process

/** Builds ./server/cmd/cableway into a temporary directory (once). */
export function buildBridge() {
  bridgeBinary ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cableway-bridge-'))
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
    const bin = join(dir, 'cableway')
    await promisify(execFile)(process.env.GO || 'go', ['build', '-o', bin, './server/cmd/cableway'], { cwd: root })
    return bin
  })()
  return bridgeBinary
}

/**
 * Starts `cableway bridge` on a free port in front of the cable at
 * upstream and waits for /healthz. Returns {url, stop, log}.
 */
export async function startBridge({ upstream, allowedOrigins = [] }) {
  const bin = await buildBridge()
  const port = await freePort()
  const proc = spawn(bin, ['bridge', '--listen', `127.0.0.1:${port}`, '--upstream', upstream,
    '--allowed-origins', allowedOrigins.join(','), '--log-level', process.env.CABLEWAY_DEBUG ? 'debug' : 'warn',
    '--metrics=false', '--shutdown-timeout', '1s'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  proc.stdout.on('data', (d) => { log += d })
  proc.stderr.on('data', (d) => { log += d; if (process.env.CABLEWAY_DEBUG) process.stderr.write(d) })
  let exited = false
  proc.on('exit', () => { exited = true })
  const url = `http://127.0.0.1:${port}`
  const stop = () => { if (!exited) proc.kill('SIGKILL') }
  try {
    await until(async () => {
      if (exited) throw new Error(`the bridge exited:\n${log}`)
      try {
        return (await fetch(`${url}/healthz`)).ok
      } catch {
        return false
      }
    }, 10000, 'bridge /healthz')
  } catch (err) {
    stop()
    throw err
  }
  return { url, stop, log: () => log }
}

/**
 * A cable URL where WebSockets fail. mode 'refuse': an HTTP server that
 * answers every request and upgrade with 404 (a proxy that refuses
 * upgrades). mode 'blackhole': a TCP server that accepts connections and
 * never answers. Returns {ws, close}.
 */
export async function blockedCable(mode) {
  const sockets = new Set()
  let server
  if (mode === 'refuse') {
    server = createHTTPServer((req, res) => { res.writeHead(404, { 'content-length': 0 }); res.end() })
    server.on('upgrade', (req, socket) => socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'))
  } else {
    server = createServer((socket) => { socket.on('error', () => {}) })
  }
  server.on('connection', (socket) => { sockets.add(socket); socket.on('close', () => sockets.delete(socket)) })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    ws: `ws://127.0.0.1:${server.address().port}/cable`,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(resolve) }),
  }
}

/**
 * An HTTP proxy in front of target (the bridge) that buffers event streams
 * until they end, as a misconfigured reverse proxy does: SSE never
 * delivers a frame through it; everything else passes. Returns {url, close}.
 */
export async function bufferingProxy(target) {
  const server = createHTTPServer((req, res) => {
    const up = httpRequest(new URL(req.url, target), { method: req.method, headers: req.headers }, (answer) => {
      if (/\/sse(\?|$)/.test(req.url)) {
        const chunks = []
        answer.on('data', (c) => chunks.push(c))
        answer.on('end', () => { res.writeHead(answer.statusCode, answer.headers); res.end(Buffer.concat(chunks)) })
      } else {
        res.writeHead(answer.statusCode, answer.headers)
        answer.pipe(res)
      }
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
    res.on('close', () => up.destroy())
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }),
  }
}
