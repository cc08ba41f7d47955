# Wisp: make run starts it with an example deployed; make test is what CI runs.
GO      ?= go
LISTEN  ?= 127.0.0.1:8080
DATA    ?= ./data
PKGS    := ./...

.PHONY: all build run test vet fmt-check test-go test-sdk bench bench-quick bench-peers clean

all: build

build:
	$(GO) build -o bin/wisp ./cmd/wisp

# Start Wisp with embedded NATS, deploy examples/hello and print the URL to try. Ctrl-C stops it.
run: build
	bin/wisp serve --listen $(LISTEN) --data $(DATA) --deploy hello=examples/hello

test: fmt-check vet test-sdk test-go

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	cd sdk/go && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...

test-sdk:
	cd sdk/go && $(GO) test ./...

# -race everywhere: the pool, gateway, kv and ring all run concurrent code. The example guests
# are built from source to wasm inside the tests that need them.
test-go:
	$(GO) test -race -timeout 20m $(PKGS)

clean:
	rm -rf bin
