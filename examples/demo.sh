#!/usr/bin/env bash
# The demo (`make demo`): on 127.0.0.1 only, it starts
#   - the example Rails ActionCable app (examples/rails),
#   - the Cableway bridge in front of it (bin/cableway bridge),
#   - a static server for examples/browser (the official @rails/actioncable
#     client with cableway's drop-in socket),
#   - the Go service (examples/go-service, user "gopher"), in the page's
#     chat room: it answers what the page says, naming its transport,
# prints what to open and what to try, and runs until Ctrl-C (or SIGTERM),
# which stops everything it started, by pid, and exits 0.
#
# Ports: RAILS_PORT (default 3000), BRIDGE_PORT (8080), PAGE_PORT (8000); a
# default port that is taken is replaced by a free one. ROOM (lobby).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
room=${ROOM:-lobby}
logs=$(mktemp -d -t cableway-demo.XXXXXX)

say() { printf '%s\n' "$*"; }

# port PREFERRED: PREFERRED if it is free on 127.0.0.1, else a free one.
port() {
  node -e '
    const net = require("net")
    const s = net.createServer().once("error", () => s.listen(0, "127.0.0.1"))
    s.on("listening", () => { console.log(s.address().port); s.close() })
    s.listen(Number(process.argv[1]), "127.0.0.1")' "$1"
}

pids=()
names=()
stopping=0
stop() {
  ((stopping)) && return
  stopping=1
  local i
  for i in "${!pids[@]}"; do
    kill -TERM -- "-${pids[$i]}" 2>/dev/null || kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for i in "${!pids[@]}"; do
    # up to 5 s each, then SIGKILL
    for _ in $(seq 1 50); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-${pids[$i]}" 2>/dev/null || kill -KILL "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  say "demo: stopped ${names[*]}"
}
trap 'stop; rm -rf "$logs"' EXIT
trap 'say; say "demo: stopping"; exit 0' INT TERM

# start NAME COMMAND...: runs COMMAND in a process group of its own (so
# that stop reaches whatever it starts), logging to $logs/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# ready NAME URL: waits until URL answers 2xx (60 s at most).
ready() {
  local i
  for i in $(seq 1 300); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    local p=${pids[-1]}
    if ! kill -0 "$p" 2>/dev/null; then
      say "demo: $1 exited; its log:"
      cat "$logs/$1.log"
      exit 1
    fi
    sleep 0.2
  done
  say "demo: $1 did not answer $2 within 60 s; its log:"
  cat "$logs/$1.log"
  exit 1
}

say "demo: building bin/cableway, bin/go-service and js/dist (the wasm)"
mkdir -p bin
go build -o bin/cableway ./server/cmd/cableway
go build -o bin/go-service ./examples/go-service
if [ ! -d node_modules/@rails/actioncable ]; then npm ci --no-audit --no-fund; fi
node js/build.mjs >/dev/null

rails_port=$(port "${RAILS_PORT:-3000}")
bridge_port=$(port "${BRIDGE_PORT:-8080}")
page_port=$(port "${PAGE_PORT:-8000}")
while [ "$bridge_port" = "$rails_port" ]; do bridge_port=$(port 0); done
while [ "$page_port" = "$rails_port" ] || [ "$page_port" = "$bridge_port" ]; do page_port=$(port 0); done
cable="ws://127.0.0.1:$rails_port/cable"
bridge="http://127.0.0.1:$bridge_port"
site="http://127.0.0.1:$page_port"

start rails env RAILS_LOG_LEVEL="${RAILS_LOG_LEVEL:-warn}" examples/rails/run "$rails_port"
ready rails "http://127.0.0.1:$rails_port/health"
# The page is on another port than the bridge, so it is cross-origin: the
# bridge must allow its origin. --pass-headers X-User lets the example
# app's X-User login through the bridge too (Cookie and Authorization
# always pass).
start bridge bin/cableway bridge --upstream "$cable" --listen "127.0.0.1:$bridge_port" \
  --allowed-origins "$site" --pass-headers X-User --metrics=false --shutdown-timeout 2s
ready bridge "$bridge/healthz"
start page node examples/browser/serve.mjs "$page_port"
ready page "$site/examples/browser/"
start go-service bin/go-service -url "$cable" -bridge "$bridge" -room "$room" -every 30s
# Its output, here too (a process group of its own, stopped with the rest).
setsid bash -c 'tail -n +1 -F "$1" 2>/dev/null | sed -u "s/^/[go-service] /"' _ "$logs/go-service.log" &
pids+=($!)
names+=(log-tail)

page="$site/examples/browser/?cable=$cable&bridge=$bridge&room=$room"
cat <<EOF

Cableway demo — everything on 127.0.0.1; Ctrl-C stops it all.

  Rails, the example app    $cable                (pid ${pids[0]})
  the Cableway bridge       $bridge                    (pid ${pids[1]})
  the page's static server  $site                    (pid ${pids[2]})
  the Go service "gopher"   in ChatChannel room "$room"  (pid ${pids[3]})
  logs                      $logs

Open the chat page (the official @rails/actioncable, with cableway's drop-in socket):

  $page

Say something there: the Go service answers, naming the transport it is connected over;
the page shows its own next to the status ("… over websocket").

Try next:
  # join the same room from a terminal, through the bridge over SSE
  bin/cableway listen --url '$cable?token=secret-carol' --bridge $bridge --transport sse \\
      --channel ChatChannel --param room=$room
  # say something as dave, over long-polling
  bin/cableway perform --url '$cable?token=secret-dave' --bridge $bridge --transport longpoll \\
      --channel ChatChannel --param room=$room --action speak --data '{"text":"hi from the CLI"}'
  # the page with WebSockets failing (nothing listens on port 9): it falls back to SSE
  $site/examples/browser/?cable=ws://127.0.0.1:9/cable&bridge=$bridge&room=$room
  # broadcast from Rails' HTTP API
  curl -XPOST 127.0.0.1:$rails_port/broadcast -d '{"stream":"chat:$room","message":{"user":"curl","text":"hi"}}'

demo: running rails=${pids[0]} bridge=${pids[1]} page=${pids[2]} go-service=${pids[3]} log-tail=${pids[4]}
EOF

# Until Ctrl-C, or until one of them exits by itself (then: its log, exit 1).
while :; do
  for i in 0 1 2 3; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      say "demo: ${names[$i]} exited; its log:"
      cat "$logs/${names[$i]}.log"
      exit 1
    fi
  done
  sleep 1 &
  wait $! || true
done
