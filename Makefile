# Cableway — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need (Debian packages) when it is missing.

GO       ?= go
APT_PKGS := ruby ruby-railties ruby-actioncable ruby-redis redis-server puma curl nginx-light stress-ng
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Counted, not timed: a timed -fuzztime can fail with a bare "context deadline
# exceeded" at its end on a loaded machine (a race in Go 1.26's fuzz
# coordinator, go.dev/issue/75804, fixed in Go 1.27); a count cannot.
FUZZTIME ?= 10000x

.PHONY: all demo test deps check unit fuzz js bench bench-micro fmt

all: test

## demo: Rails, the bridge, the Go service and the browser page on 127.0.0.1, chatting in one room
## (Ctrl-C stops everything it started and exits 0). On a terminal the script runs as its own
## foreground job (bash -m), so that Ctrl-C reaches it alone and make does not die of SIGINT.
demo: deps
	@if [ -t 0 ]; then bash -mc 'examples/demo.sh; exit $$?'; else examples/demo.sh; fi

## test: everything CI runs — static checks, the wasm build, go test -race, a fuzz smoke run,
## and the npm package's tests (Node against Rails, headless Chromium)
test: deps check unit fuzz js

## deps: install the Debian packages the tests and the demo need, if missing
deps:
	@if ! command -v puma >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1 || \
	    ! { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 || \
	    ! command -v redis-server >/dev/null 2>&1 || ! command -v stress-ng >/dev/null 2>&1 || \
	    ! ruby -e 'require "action_cable"; require "redis"' >/dev/null 2>&1; then \
	  echo "installing $(APT_PKGS)"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_PKGS); \
	fi

## check: formatting, vet, and the GOOS=js build of the SDK
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) build ./sdk/... ./wasm/...
	GOOS=js GOARCH=wasm $(GO) vet ./wasm/...

## unit: all Go tests with the race detector, Rails required
unit:
	CABLEWAY_REQUIRE_RAILS=1 $(GO) test -race -count=1 -timeout 20m ./...
	GOOS=js GOARCH=wasm $(GO) test -count=1 -exec="$$($(GO) env GOROOT)/lib/wasm/go_js_wasm_exec" ./wasm/

## fuzz: a short run of every fuzz target (FUZZTIME each, default 10000 inputs)
FUZZ_PKGS := ./sdk/protocol/ ./internal/bridgewire/ ./server/bridge/ ./server/compat/ ./server/cmd/cableway/ ./sdk/transport/internal/bridgeconn/ ./sdk/cable/
fuzz:
	@for p in $(FUZZ_PKGS); do \
	  for t in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
	    echo "fuzz $$p $$t"; \
	    $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$p || exit 1; \
	  done; \
	done

## js: build the wasm and run the npm package's tests (js/scripts/deps.sh installs chromium and npm deps)
js:
	npm test

## bench: one table measured in one run on this machine (`go run ./internal/bench/table -h`): Go
## clients and Node's official client on one Go feed, the drop-in in Chromium, the bridge vs direct;
## then the bridge under load (internal/bench/bridgeload: K SSE sessions through the real binary,
## failing on any lost frame).
bench: deps
	node js/build.mjs
	bash js/scripts/deps.sh
	$(GO) run ./internal/bench/table
	$(GO) run ./internal/bench/bridgeload -fail-on-loss

## soak: the bridge's soaks (issue #12, RELIABILITY.md): 1k and 5k sessions (a fifth long-polling) under
## a broadcast every second, 9k (the most 20000 descriptors per process hold) every 5 s; 10 minutes each
.PHONY: soak
soak:
	$(GO) run ./internal/bench/bridgeload -soak 10m -k 1000 -soak-every 1s -longpoll 0.2
	$(GO) run ./internal/bench/bridgeload -soak 10m -k 5000 -soak-every 1s -longpoll 0.2
	$(GO) run ./internal/bench/bridgeload -soak 10m -k 9000 -per-ip 90 -soak-every 5s -longpoll 0.2 -ack 5s -ack-workers 8

## bench-micro: the Go micro-benchmarks.
bench-micro:
	$(GO) test -run='^$$' -bench=. -benchmem ./sdk/...

fmt:
	gofmt -w $$(git ls-files '*.go')
