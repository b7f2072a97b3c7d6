// The Go tests that run under GOOS=js (Node, through Go's
// go_js_wasm_exec): the sdk's JS WebSocket transport against fakes of the
// JS hook and of globalThis.WebSocket (sdk/transport/websocket/js_test.go).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { root } from './helpers.mjs'

const run = promisify(execFile)
const go = process.env.GO || 'go'

test('GOOS=js go test ./sdk/transport/websocket', async () => {
  const goroot = (await run(go, ['env', 'GOROOT'], { cwd: root })).stdout.trim()
  // Go ≥ 1.24 keeps it in lib/wasm; older releases in misc/wasm.
  const exec = [join(goroot, 'lib', 'wasm', 'go_js_wasm_exec'), join(goroot, 'misc', 'wasm', 'go_js_wasm_exec')].find(existsSync)
  assert.ok(exec, `go_js_wasm_exec not found under ${goroot}`)
  const { stdout } = await run(go, ['test', '-count=1', `-exec=${exec}`, './sdk/transport/websocket'], {
    cwd: root,
    env: { ...process.env, GOOS: 'js', GOARCH: 'wasm' },
    timeout: 120000,
  }).catch((err) => assert.fail(`${err.message}\n${err.stdout}\n${err.stderr}`))
  assert.match(stdout, /^ok\s/m)
})
