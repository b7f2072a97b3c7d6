// Builds js/dist/: cableway.wasm from ./wasm (GOOS=js GOARCH=wasm) and the
// wasm_exec.js of the SAME Go toolchain, which the .wasm must be run with.
// Usage: node js/build.mjs   (npm run build)
import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const js = dirname(fileURLToPath(import.meta.url))
const root = dirname(js)
const dist = join(js, 'dist')
const go = process.env.GO || 'go'
mkdirSync(dist, { recursive: true })

execFileSync(go, ['build', '-trimpath', '-ldflags=-s -w', '-o', join(dist, 'cableway.wasm'), './wasm/cmd/cableway'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, GOOS: 'js', GOARCH: 'wasm' },
})

const goroot = execFileSync(go, ['env', 'GOROOT'], { cwd: root, encoding: 'utf8' }).trim()
// Go ≥ 1.24 keeps it in lib/wasm; older releases in misc/wasm.
const src = [join(goroot, 'lib', 'wasm', 'wasm_exec.js'), join(goroot, 'misc', 'wasm', 'wasm_exec.js')].find(existsSync)
if (!src) throw new Error(`wasm_exec.js not found under ${goroot}`)
copyFileSync(src, join(dist, 'wasm_exec.js'))
console.log(`built ${join(dist, 'cableway.wasm')} with ${src}`)
