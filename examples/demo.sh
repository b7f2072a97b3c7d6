#!/usr/bin/env bash
# Runs the demo: the example Rails ActionCable app on a free loopback port,
# and the Go service consuming it, until Ctrl-C stops both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 3000)}
log=$(mktemp -t cableway-rails.XXXXXX.log)

setsid "$root/examples/rails/run" "$port" >"$log" 2>&1 &
rails=$!
stop() {
  kill -TERM -- "-$rails" 2>/dev/null || true
  wait "$rails" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

echo "starting Rails on 127.0.0.1:$port (log: $log)"
for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$rails" 2>/dev/null; then echo "Rails failed to start:"; cat "$log"; exit 1; fi
  sleep 0.2
done
echo "Rails is up; starting the Go service (Ctrl-C to stop)"
cd "$root"
go run ./examples/go-service -url "ws://127.0.0.1:$port/cable" "$@"
