# cairn's build. Every target uses the Go toolchain on the PATH
# (GOTOOLCHAIN=local): go.mod pins the language version, nothing is
# downloaded behind your back.
export GOTOOLCHAIN := local

GO        ?= go
BIN       ?= bin/cairn
BENCHTIME ?= 1s
# staticcheck's release that builds with this Go; fetched through the
# module proxy by `go run`, go.mod untouched.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PLATFORMS ?= linux/amd64 linux/arm64

.PHONY: all build run test test-system test-compat bench bench-system bench-cluster lint clean release image

all: lint test build

## build: compile bin/cairn and bin/registrator
build:
	$(GO) build -o $(BIN) ./cmd/cairn
	$(GO) build -o bin/registrator ./cmd/registrator

## run: a throwaway single-server agent (HTTP API on 127.0.0.1:8500). The
## binary replaces the recipe's shell (exec), so Ctrl-C reaches cairn
## alone, it leaves and exits 0, and make reports no error.
run: build
	exec $(BIN) agent -dev

## release: static binaries (CGO_ENABLED=0) of cairn and registrator for
## $(PLATFORMS) in dist/, named <tool>-<os>-<arch>, and dist/SHA256SUMS
release:
	rm -rf dist && mkdir -p dist
	set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		for tool in cairn registrator; do \
			echo "dist/$$tool-$$os-$$arch"; \
			CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags='-s -w' \
				-o dist/$$tool-$$os-$$arch ./cmd/$$tool; \
		done; \
	done
	mkdir -p dist/.data   # the image's /data (Dockerfile)
	cd dist && sha256sum cairn-* registrator-* > SHA256SUMS
	cat dist/SHA256SUMS

## image: the cairn container image (Dockerfile: FROM scratch, non-root) from dist/
image: release
	docker build -t cairn:$(VERSION) .

## test: go vet, then every test with the race detector (e2e builds and runs the binary)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## test-system: the slow real-system suites (build tag "system", tests named TestSystem*): IPVS in a
## qemu-booted kernel (run vmtest/prepare.sh once first, as root), and the registrator against the
## real Docker engine and Swarm, and the examples (their READMEs as written, the Compose cluster, the
## release image). They need root; under CI=true a missing prerequisite fails.
test-system:
	mkdir -p $(CURDIR)/test-artifacts
	$(GO) test -tags system -run '^TestSystem' -count=1 -p 1 -timeout 60m -artifacts -outputdir $(CURDIR)/test-artifacts ./...

## test-compat: consul/api v1.34.5's own tests (KV, txn, sessions, locks, semaphores, catalog, health,
## agent, status) against cairn, through a consul stand-in (compat/); only the tests listed with a
## reason in compat/OUT_OF_SCOPE.md may fail. Downloads consul/api's test dependencies (sdk, testify).
test-compat:
	$(GO) test -tags compat -count=1 -timeout 60m ./compat

## bench-system: in-VM benchmarks (IPVS at 10k services; minutes under emulation)
bench-system:
	$(GO) test -count=1 -tags system -run '^TestSystemIPVS$$' -bench VM -timeout 60m ./agent/vip/ipvs

## bench: benchmarks; CI runs them once with BENCHTIME=1x
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./...

## bench-cluster: leader failover time and 1- vs 3-server KV throughput with real processes on 127.0.0.1 (bench/failover, ~2 min)
bench-cluster: build
	$(GO) run ./bench/failover -bin $(BIN) $(BENCH_CLUSTER_FLAGS)

## lint: gofmt must have nothing to say, then go vet and staticcheck
lint:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt would change these files (run: gofmt -w .):"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) vet ./...
	$(GO) vet -tags system ./...
	$(GO) vet -tags compat ./compat
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags system ./...
	$(GO) run $(STATICCHECK) -tags compat ./compat

clean:
	rm -rf bin dist
