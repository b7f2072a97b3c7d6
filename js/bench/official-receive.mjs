// Receives N broadcasts with the official @rails/actioncable client under
// Node (with the ws package as its WebSocket) and prints the rate, for the
// Go receive benchmark (sdk/cable/bench_test.go) to compare in one run.
//
//   node js/bench/official-receive.mjs ws://127.0.0.1:PORT/cable N
import WebSocket from 'ws';
import * as ActionCable from '@rails/actioncable';

const [url, nArg] = process.argv.slice(2);
const n = Number(nArg);
globalThis.WebSocket = WebSocket;
ActionCable.adapters.WebSocket = WebSocket;
ActionCable.adapters.logger = { log() {} };
// The official client needs these browser globals for its visibility logic.
globalThis.document ??= { visibilityState: 'visible', addEventListener() {}, removeEventListener() {} };
globalThis.window ??= { addEventListener() {}, removeEventListener() {} };
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};

const consumer = ActionCable.createConsumer(url);
let count = 0;
let start;
consumer.subscriptions.create({ channel: 'ChatChannel', room: 'lobby' }, {
  received(data) {
    // Read the message as a user would (the client has JSON.parse'd it).
    if (typeof data.seq !== 'number' || typeof data.ts !== 'number') {
      process.stderr.write(`unexpected message ${JSON.stringify(data)}\n`);
      process.exit(1);
    }
    if (count === 0) start = process.hrtime.bigint();
    if (++count === n) {
      const s = Number(process.hrtime.bigint() - start) / 1e9;
      process.stdout.write(JSON.stringify({ messages: n, seconds: s, rate: (n - 1) / s }) + '\n');
      consumer.disconnect();
      process.exit(0);
    }
  },
});
setTimeout(() => { process.stderr.write(`timeout after ${count} messages\n`); process.exit(1); }, 60000);
