// The official @rails/actioncable client under Node (with the ws package
// as its WebSocket) on the benchmarks' Go feed (internal/bench/feeder):
// subscribes, asks for N messages, reads seq and ts of each parsed message
// as a user would, and prints one JSON line. Used by sdk/cable's
// BenchmarkReceive and by the bench table (internal/bench/table).
//
//   node js/bench/official-receive.mjs ws://127.0.0.1:PORT/cable N [RATE]
//
// Without RATE the feed floods: {messages, seconds, rate} (first message
// to last). With RATE (messages a second) it paces them, each stamped
// with the Unix time in ns it was written, and the line adds p50us and
// p99us: the time from the feeder's write to the message read here.
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import * as ActionCable from '@rails/actioncable';

const [url, nArg, rateArg] = process.argv.slice(2);
const n = Number(nArg);
const rate = rateArg === undefined ? 0 : Number(rateArg);
if (!url || !Number.isInteger(n) || n < 2 || !(rate >= 0)) {
  process.stderr.write('usage: official-receive.mjs ws://HOST:PORT/cable N [RATE]  (N ≥ 2, RATE ≥ 0)\n');
  process.exit(2);
}
const firstSeq = 10_000_000_000; // feeder.FirstSeq
globalThis.WebSocket = WebSocket;
ActionCable.adapters.WebSocket = WebSocket;
ActionCable.adapters.logger = { log() {} };
// The official client needs these browser globals for its visibility logic.
globalThis.document ??= { visibilityState: 'visible', addEventListener() {}, removeEventListener() {} };
globalThis.window ??= { addEventListener() {}, removeEventListener() {} };
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};

// Wall-clock now in µs, as precise as the monotonic clock (Date.now() has ms).
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

const consumer = ActionCable.createConsumer(url);
const lat = rate > 0 ? new Float64Array(n) : null;
let count = 0;
let start;
const sub = consumer.subscriptions.create({ channel: 'ChatChannel', room: 'lobby' }, {
  connected() {
    sub.perform(rate > 0 ? 'paced' : 'flood', rate > 0 ? { count: n, rate } : { count: n });
  },
  received(data) {
    // Read the message as a user would (the client has JSON.parse'd it).
    if (typeof data.seq !== 'number' || typeof data.ts !== 'number') {
      if (data.done !== undefined) return;
      fail(`unexpected message ${JSON.stringify(data)}`);
    }
    if (data.seq !== firstSeq + count) fail(`seq ${data.seq}, want ${firstSeq + count}: a message lost or out of order`);
    if (lat) lat[count] = nowUs() - data.ts / 1000;
    if (count === 0) start = process.hrtime.bigint();
    if (++count === n) {
      const s = Number(process.hrtime.bigint() - start) / 1e9;
      const out = { messages: n, seconds: s, rate: (n - 1) / s };
      const kib = peakRSSKiB();
      if (kib !== null) out.peakRSSKiB = kib;
      if (lat) {
        lat.sort();
        out.p50us = lat[Math.floor((n - 1) * 0.5)];
        out.p99us = lat[Math.floor((n - 1) * 0.99)];
      }
      process.stdout.write(JSON.stringify(out) + '\n');
      consumer.disconnect();
      process.exit(0);
    }
  },
});

// This process's peak resident set, VmHWM in /proc/self/status (Linux);
// not process.resourceUsage().maxRSS, which after the exec that started
// this process may be the parent's peak.
function peakRSSKiB() {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function fail(msg) {
  process.stderr.write(msg + '\n');
  process.exit(1);
}
setTimeout(() => fail(`timeout after ${count} of ${n} messages`), 120000).unref();
