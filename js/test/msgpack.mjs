// A tiny MessagePack encoder/decoder for test peers (maps, arrays, strings,
// numbers, booleans, nil): enough to play an actioncable-v1-msgpack server.
const enc = new TextEncoder()
const dec = new TextDecoder()

export function encode(v, out = []) {
  if (v === null || v === undefined) out.push(0xc0)
  else if (v === true || v === false) out.push(v ? 0xc3 : 0xc2)
  else if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 32) {
    if (v < 128) out.push(v)
    else out.push(0xce, v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255)
  } else if (typeof v === 'number') {
    const b = new DataView(new ArrayBuffer(8))
    b.setFloat64(0, v)
    out.push(0xcb, ...new Uint8Array(b.buffer))
  } else if (typeof v === 'string') {
    const s = enc.encode(v)
    if (s.length < 32) out.push(0xa0 | s.length)
    else out.push(0xdb, s.length >>> 24, (s.length >>> 16) & 255, (s.length >>> 8) & 255, s.length & 255)
    out.push(...s)
  } else if (Array.isArray(v)) {
    out.push(0xdd, v.length >>> 24, (v.length >>> 16) & 255, (v.length >>> 8) & 255, v.length & 255)
    for (const x of v) encode(x, out)
  } else {
    const keys = Object.keys(v)
    out.push(0xdf, keys.length >>> 24, (keys.length >>> 16) & 255, (keys.length >>> 8) & 255, keys.length & 255)
    for (const k of keys) encode(v[k], encode(k, out))
  }
  return out
}

export const pack = (v) => Uint8Array.from(encode(v))

export function unpack(bytes) {
  const b = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let i = 0
  const str = (n) => dec.decode(bytes.subarray(i, (i += n)))
  const map = (n) => Object.fromEntries(Array.from({ length: n }, () => [read(), read()]))
  const arr = (n) => Array.from({ length: n }, read)
  function read() {
    const t = bytes[i++]
    if (t < 0x80) return t
    if (t >= 0xe0) return t - 256
    if ((t & 0xf0) === 0x80) return map(t & 15)
    if ((t & 0xf0) === 0x90) return arr(t & 15)
    if ((t & 0xe0) === 0xa0) return str(t & 31)
    const u = (n) => { const v = n === 1 ? b.getUint8(i) : n === 2 ? b.getUint16(i) : b.getUint32(i); i += n; return v }
    switch (t) {
      case 0xc0: return null
      case 0xc2: return false
      case 0xc3: return true
      case 0xcb: { const v = b.getFloat64(i); i += 8; return v }
      case 0xcc: return u(1)
      case 0xcd: return u(2)
      case 0xce: return u(4)
      case 0xd9: return str(u(1))
      case 0xda: return str(u(2))
      case 0xdb: return str(u(4))
      case 0xdc: return arr(u(2))
      case 0xdd: return arr(u(4))
      case 0xde: return map(u(2))
      case 0xdf: return map(u(4))
    }
    throw new Error(`msgpack: type 0x${t.toString(16)} not supported here`)
  }
  return read()
}
