# Veil's build. `make demo` and `make test` work on a fresh Debian/Ubuntu machine as root:
# missing system packages are installed first.

GO       ?= go
TAGS     := duckdb_arrow,seccomp
BIN      := bin/veil
DEMO_DIR ?= /tmp/veil-demo
DEB_PKGS := libseccomp-dev libseccomp2 pkg-config runc curl chromium fonts-noto-cjk

export CGO_ENABLED := 1

# What `veil version` reports: the tag or commit this build is of (-dirty with uncommitted
# changes), stamped into the binary; a plain go build falls back to Go's VCS stamp.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all deps build test test-cli test-short fuzz-short demo bench lint fmt clean

all: build

# deps installs the Debian packages the build and the tests need, when they are missing.
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root, or install them)"; exit 1; fi; \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/veil
	$(GO) build -tags $(TAGS) -o bin/citygen ./testdata/citygen
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w -X main.mode=aggregate" -o bin/vendorprog-aggregate ./testdata/vendorprog
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w -X main.mode=copy" -o bin/vendorprog-copy ./testdata/vendorprog

# test runs the whole suite: real DuckDB, real SQLite, real containers (as root), the real
# daemon on a Unix socket. Concurrency-sensitive packages run again under the race detector.
test: deps
	$(GO) vet -tags $(TAGS) ./... ./testdata ./testdata/citygen ./testdata/vendorprog
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) test -tags $(TAGS) -timeout 20m ./... ./testdata ./testdata/citygen
	$(GO) test -tags $(TAGS) -race -timeout 20m ./policy/... ./ledger/... ./jobs/... ./daemon/...
	$(MAKE) --no-print-directory fuzz-short
	$(MAKE) --no-print-directory test-cli

# fuzz-short fuzzes every fuzz target of the module (each `func FuzzX` of a _test.go file,
# found anew on each run, so that a new target is never left out) for FUZZTIME, one target a
# run as `go test -fuzz` requires. A failure leaves its input under the package's
# testdata/fuzz/FuzzX/, where the ordinary test run replays it from then on.
FUZZTIME ?= 5s
# FUZZ_SLOW targets parse a whole key bundle or model per input (about 250 ms under the
# fuzzer's coverage instrumentation, after each worker builds the keys). Go's fuzzer fails
# with "context deadline exceeded" when its baseline pass over the seed corpus has not
# finished within -fuzztime, which 5s did not always allow on a loaded machine: these get
# FUZZTIME_SLOW.
FUZZ_SLOW = FuzzUnmarshalPublicBundle FuzzUnmarshalEncryptedModel
FUZZTIME_SLOW ?= 20s
fuzz-short:
	@set -e; log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
		pkg=./$$(dirname $${f#./}); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			ft=$(FUZZTIME); case " $(FUZZ_SLOW) " in *" $$t "*) ft=$(FUZZTIME_SLOW);; esac; \
			echo "fuzz	$$pkg $$t ($$ft)"; \
			$(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$t\$$" -fuzztime $$ft $$pkg >"$$log" 2>&1 \
				|| { cat "$$log"; echo "fuzz target $$t of $$pkg failed"; exit 1; }; \
		done; \
	done

# test-cli runs the demo scenario on a small city through the built CLI, as every role; the
# script fails on any unexpected success or failure.
test-cli: build
	@RESIDENTS=5000 ./scripts/demo.sh $(DEMO_DIR)-test >$(DEMO_DIR)-test.log 2>&1 \
		|| { tail -40 $(DEMO_DIR)-test.log; echo "CLI scenario failed (full log: $(DEMO_DIR)-test.log)"; exit 1; }
	@echo "ok  	CLI scenario (scripts/demo.sh, 5000 residents)"

test-short: deps
	$(GO) test -tags $(TAGS) -short ./...

# demo builds Veil, generates the demo city, starts a daemon on an embedded store and runs
# the life of a job as each role.
demo: build
	./scripts/demo.sh $(DEMO_DIR)

# bench measures the figures in bench/RESULTS.md (as root: the sandboxed path): the sandbox's
# own cost against an unsandboxed child and runc's CLI, fresh and prepared ahead; the runner
# against raw DuckDB; threshold and dp queries end to end against raw DuckDB on 10M
# generated rows and on vega-datasets' flights-3m.parquet (fetched with npm, checked against
# its digest); dp and threshold on 100M generated rows with a spill area; and the Privacy on
# Beam peer (bench/beam, its own Go module so that Beam stays out of Veil's go.mod; its first
# build takes minutes). Figures are written as they are measured.
FLIGHTS        := bench/data/flights-3m.parquet
FLIGHTS_SHA256 := dbeb920c90f59b6ccaff823dcc3d08f25a97fa1ce128d93f40be4e931f5900b0
FLIGHTS_QUERY  := SELECT origin, COUNT(*) AS n, AVG(delay) AS d FROM t GROUP BY origin

bench: build
	$(GO) build -tags $(TAGS) -o bin/bench-sandbox ./bench/sandbox
	cd bench/beam && $(GO) build -o ../../bin/bench-beam .
	mkdir -p bench/data
	@if [ ! -f $(FLIGHTS) ]; then \
		echo "fetching vega-datasets@3.2.1 for $(FLIGHTS)"; \
		tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent vega-datasets@3.2.1 >/dev/null) \
			&& tar -xzf $$tmp/vega-datasets-3.2.1.tgz -C $$tmp package/data/flights-3m.parquet \
			&& mv $$tmp/package/data/flights-3m.parquet $(FLIGHTS).tmp; rm -rf $$tmp; \
		echo "$(FLIGHTS_SHA256)  $(FLIGHTS).tmp" | sha256sum -c --quiet - && mv $(FLIGHTS).tmp $(FLIGHTS) \
			|| { rm -f $(FLIGHTS).tmp; echo "could not fetch $(FLIGHTS) (npm and the registry are needed)"; exit 1; }; \
	fi
	./bin/bench-sandbox -n 100 -parquet $(FLIGHTS) -query "$(FLIGHTS_QUERY)" > bench/data/sandbox.json
	./$(BIN) bench --sandbox-json bench/data/sandbox.json --beam bin/bench-beam --flights $(FLIGHTS)

lint:
	$(GO) vet -tags $(TAGS) ./... ./testdata ./testdata/citygen ./testdata/vendorprog
	gofmt -l .

fmt:
	gofmt -w .

clean:
	rm -rf bin
