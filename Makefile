# Wisp: make run starts it with an example deployed; make test is what CI runs.
GO      ?= go
LISTEN  ?= 127.0.0.1:8080
DATA    ?= ./data
PKGS    := ./...

.PHONY: all build run test vet fmt-check test-go test-sdk bench bench-quick bench-peers clean

all: build

build:
	$(GO) build -o bin/wisp ./cmd/wisp

# Start Wisp with embedded NATS, deploy examples/hello, turn on the playground and print the URLs
# to try. Ctrl-C stops it.
run: build
	bin/wisp serve --listen $(LISTEN) --data $(DATA) --deploy hello=examples/hello --playground

test: fmt-check vet test-sdk test-go

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	cd sdk/go && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...
	cd sdk/js && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...

test-sdk:
	cd sdk/go && $(GO) test ./...
	cd sdk/js && $(GO) test ./...

# -race everywhere: the pool, gateway, kv and ring all run concurrent code. The example guests
# are built from source to wasm inside the tests that need them.
test-go:
	$(GO) test -race -timeout 20m $(PKGS)

bin/nativehello: $(shell find bench/nativehello -name '*.go')
	$(GO) build -o bin/nativehello ./bench/nativehello

# The side-by-side report (<= 10 min): microbenchmarks, native Hertz hello, Wisp warm and cold,
# workerd when installed. Writes bench/results/latest.{json,html} and micro.txt.
bench: build bin/nativehello
	$(GO) run ./bench/cmd/report

# A reduced run (<= 90 s): native and Wisp warm only; prints JSON.
bench-quick: build bin/nativehello
	$(GO) run ./bench/cmd/report -quick

# Installs workerd (the peer make bench compares with) into .peers/, ignored by git.
bench-peers:
	mkdir -p .peers && cd .peers && npm i -E --no-audit --no-fund workerd@1.20261117.1

clean:
	rm -rf bin
