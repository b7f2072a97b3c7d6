// `make demo` as a user runs it: on a terminal (a pty made by script(1)),
// driven in Chromium, then stopped with Ctrl-C typed on that terminal.
// The page (the official @rails/actioncable with the drop-in) says
// something; the Go service must receive it and answer, naming its
// transport, and the page must show the answer. Ctrl-C must stop
// everything the demo started and make must exit 0.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { after, test } from 'node:test'
import { launch } from './chromium.mjs'
import { root, until } from './helpers.mjs'

let demo, browser, pids = []
after(async () => {
  await browser?.close()
  for (const pid of pids) {
    try { process.kill(-pid, 'SIGKILL') } catch {}
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
  if (demo && demo.exitCode === null) demo.kill('SIGKILL')
})

// runningIn lists the processes (not zombies: their parent may be gone and
// pid 1 reap them late) whose process group is pgid: [pid, command].
function runningIn(pgid) {
  const found = []
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let stat
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(pgrp) === pgid && state !== 'Z') found.push([Number(pid), stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))])
  }
  return found
}

test('make demo: the page and the Go service chat in one room; Ctrl-C stops it all, exit 0', { timeout: 600000 }, async () => {
  const room = `demo-${randomBytes(3).toString('hex')}`
  demo = spawn('script', ['-qefc', 'make demo', '/dev/null'], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
    // Free ports (0), not the defaults a developer's own demo may hold.
    env: { ...process.env, RAILS_PORT: '0', BRIDGE_PORT: '0', PAGE_PORT: '0', ROOM: room },
  })
  let out = ''
  demo.stdout.on('data', (d) => { out += d; if (process.env.CABLEWAY_DEBUG) process.stderr.write(d) })
  demo.stderr.on('data', (d) => { out += d })
  const exited = new Promise((resolve) => demo.on('exit', (code, signal) => resolve({ code, signal })))
  let ended = false
  exited.then(() => { ended = true })
  const waitOut = (re, what, ms = 300000) => until(() => {
    const m = out.match(re)
    if (!m && ended) throw new Error(`the demo exited before ${what}:\n${out}`)
    return m
  }, ms, `${what}; output so far:\n${out}`)

  const running = await waitOut(/demo: running rails=(\d+) bridge=(\d+) page=(\d+) go-service=(\d+) log-tail=(\d+)/, 'it was running')
  pids = running.slice(1).map(Number)
  const pageURL = out.match(/^\s*(http:\/\/127\.0\.0\.1:\d+\/examples\/browser\/\?cable=ws:\/\/127\.0\.0\.1:\d+\/cable&bridge=\S+)\r?$/m)[1]
  assert.match(pageURL, new RegExp(`room=${room}$`))
  assert.match(out, /bin\/cableway listen --url '[^']+' --bridge http:\/\/127\.0\.0\.1:\d+ --transport sse/, 'it says how to join through SSE')
  await waitOut(new RegExp(`\\[go-service\\] subscribed to \\{"channel":"ChatChannel","room":"${room}"\\} over websocket`), 'the Go service subscribed')

  browser = await launch()
  const page = await browser.context.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(e))
  await page.goto(pageURL)
  await page.waitForFunction((room) => document.getElementById('status').textContent === `connected to ${room}`, room, { timeout: 60000 })
  assert.match(await page.textContent('#proto'), /over websocket/, 'the page names its transport')

  const text = `hello from the page ${randomBytes(3).toString('hex')}`
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
  // page → Rails → the Go service
  await waitOut(new RegExp(`\\[go-service\\] received: alice: ${text}`), 'the Go service received the page\'s message', 60000)
  // the Go service → Rails → the page, naming the Go service's transport
  await page.waitForFunction((want) => document.getElementById('log').textContent.includes(want),
    `gopher: heard alice say "${text}" (Go, over websocket)`, { timeout: 60000 })
  assert.deepEqual(errors.map(String), [])
  await page.close()

  // Ctrl-C, typed on the demo's terminal.
  demo.stdin.write('\x03')
  const { code, signal } = await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error(`no exit 60 s after Ctrl-C:\n${out}`)), 60000).unref())])
  assert.equal(signal, null)
  assert.equal(code, 0, `make demo exited ${code} after Ctrl-C:\n${out}`)
  assert.match(out, /demo: stopped rails bridge page go-service log-tail/)
  assert.doesNotMatch(out, /make: \*\*\*/)
  // Each was started in a process group of its own: nothing of any group
  // (puma, tail and sed of the log tail…) may be left.
  for (const pid of pids) assert.deepEqual(runningIn(pid), [], `process group ${pid} still runs after the demo stopped`)
  const [, railsPort] = pageURL.match(/cable=ws:\/\/127\.0\.0\.1:(\d+)/)
  await assert.rejects(fetch(`http://127.0.0.1:${railsPort}/health`), 'Rails still answers')
})
