// Shared test helpers: the example Rails app, free ports, waiting on events.
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

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
