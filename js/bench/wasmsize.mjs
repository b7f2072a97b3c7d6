// What each Go package costs in cableway.wasm: the size of its functions'
// code and of its data, from a build with symbols (the shipped one is built
// with -s -w, which drops the name section this reads).
//
//   node js/bench/wasmsize.mjs [N]   # the N largest packages (default 30)
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { brotliCompressSync, constants } from 'node:zlib'
import { root } from '../test/helpers.mjs'

const top = Number(process.argv[2] ?? 30)
const dir = mkdtempSync(join(tmpdir(), 'cableway-wasmsize-'))
const out = join(dir, 'cableway.wasm')
try {
  execFileSync(process.env.GO || 'go', ['build', '-trimpath', '-o', out, './wasm/cmd/cableway'], {
    cwd: root, stdio: 'inherit', env: { ...process.env, GOOS: 'js', GOARCH: 'wasm' },
  })
  report(readFileSync(out))
} finally {
  rmSync(dir, { recursive: true, force: true })
}

function report(b) {
  let p = 8
  const leb = () => {
    let r = 0, s = 0, x
    do { x = b[p++]; r += (x & 0x7f) * 2 ** s; s += 7 } while (x & 0x80)
    return r
  }
  let imports = 0
  const bodies = [] // code size per defined function
  const names = new Map() // function index → name
  let dataTotal = 0
  const sections = {}
  while (p < b.length) {
    const id = b[p++]
    const size = leb()
    const end = p + size
    sections[id] = (sections[id] ?? 0) + size
    if (id === 2) { // imports: count the imported functions
      for (let n = leb(); n > 0; n--) {
        p += leb(); p += leb() // module, name
        const kind = b[p++]
        if (kind === 0) { leb(); imports++ } else if (kind === 1) { p++; const f = leb(); leb(); if (f & 1) leb() } else if (kind === 2) { const f = leb(); leb(); if (f & 1) leb() } else { p += 2 }
      }
    } else if (id === 10) {
      for (let n = leb(); n > 0; n--) { const sz = leb(); bodies.push(sz); p += sz }
    } else if (id === 11) {
      dataTotal = size
    } else if (id === 0) {
      const nl = leb()
      const name = b.toString('utf8', p, p + nl)
      p += nl
      if (name === 'name') {
        while (p < end) {
          const sub = b[p++]
          const ss = leb()
          const se = p + ss
          if (sub === 1) for (let n = leb(); n > 0; n--) { const i = leb(); const l = leb(); names.set(i, b.toString('utf8', p, p + l)); p += l }
          p = se
        }
      }
    }
    p = end
  }
  // The name section spells import paths with _ for / (and for the ( * )
  // of methods): github.com_x_y_pkg.(*T).M is github.com_x_y_pkg.__T_.M. The
  // package is what precedes the first dot, past a leading domain's.
  const pkgOf = (fn) => {
    if (fn.startsWith('type_.')) return '(type equality and hash functions)'
    const domain = /^[a-z0-9-]+(\.[a-z0-9-]+)+_/.exec(fn)
    let dot = fn.indexOf('.', domain ? domain[0].length : 0)
    if (dot < 0) dot = fn.indexOf('.') // sync.runtime_notifyListCheck: no domain after all
    return (dot < 0 ? fn : fn.slice(0, dot)).replaceAll('_', '/')
  }
  const byPkg = new Map()
  bodies.forEach((sz, i) => {
    const pkg = pkgOf(names.get(imports + i) ?? '?')
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + sz)
  })
  const codeTotal = bodies.reduce((a, x) => a + x, 0)
  const br = brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: b.length } }).length
  console.log(`cableway.wasm with symbols: ${b.length} B (brotli ${br} B); code ${codeTotal} B in ${bodies.length} functions, data ${dataTotal} B`)
  console.log('code by package (bytes, share of code):')
  for (const [pkg, sz] of [...byPkg].sort((x, y) => y[1] - x[1]).slice(0, top)) {
    console.log(`${String(sz).padStart(9)}  ${(100 * sz / codeTotal).toFixed(1).padStart(5)}%  ${pkg}`)
  }
}
