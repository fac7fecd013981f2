# gpuflow — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
TOOLS     := $(CURDIR)/.tools
STATICCHECK_VERSION := v0.8.2
# The supply-chain checks of `make lint` (docs/SECURITY-SUPPLY-CHAIN.md).
GOSEC_VERSION       := v2.30.0
GOVULNCHECK_VERSION := v1.9.0
# The Go vulnerability database, as the module golang.org/x/vulndb (its
# pseudo-version dates the data): built into the layout govulncheck reads
# from disk, so the scan itself asks no server.
VULNDB_VERSION      := v0.0.0-20261105234957-e22db6528018
VULNDB              := $(TOOLS)/vulndb-$(VULNDB_VERSION)
# Dev- and test-only code that gosec skips: never linked into bin/gpuflow
# (the emulators, the embedded dev servers, the scheduling simulator).
GOSEC_SKIP := internal/pgcluster internal/devstack internal/devtemporal internal/topology internal/chaos internal/e2e \
	provider/emulate provider/runpod/emulator provider/tencent/emulator provider/alibaba/emulator \
	scheduler/sim cmd/gpuflow-sim
# G104 (unchecked errors): the hits are Close calls on error paths and on
# read bodies, where the first error is the one returned.
GOSEC_FLAGS := -quiet -exclude-generated -exclude=G104 $(addprefix -exclude-dir=,$(GOSEC_SKIP))
FUZZTIME ?= 1m
# Packages whose tests link the embedded Temporal server: slow to build,
# so they run without the race detector and with a longer timeout.
SERVER_PKGS := ./internal/e2e/... ./internal/devtemporal/... ./internal/devstack/... ./internal/topology/... ./internal/chaos/...
UNIT_PKGS    = $(shell $(GO) list ./... | grep -v -e /internal/e2e -e /internal/devtemporal -e /internal/devstack -e /internal/topology -e /internal/chaos)

.PHONY: help run topology chaos build test test/unit test/integration test/ui web lint lint/go lint/gosec lint/vuln fuzz bench clean postgres replay-capture

help: ## list the targets
	@grep -E '^[a-zA-Z/_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

run: postgres ## run the whole system in one process (API :8080, Temporal Web UI :8233)
	$(GO) build -tags dev -o bin/gpuflow-dev ./cmd/gpuflow
	./bin/gpuflow-dev dev

topology: postgres ## the production topology here, each component its own process: PostgreSQL, Temporal on it, the emulators, migrate, 2 APIs, 2 workers (Ctrl-C stops it; state in .data/topology)
	$(GO) build -tags dev -o bin/gpuflow-dev ./cmd/gpuflow
	./bin/gpuflow-dev topology --dir .data/topology

build: ## build bin/gpuflow (production: api, worker, migrate) and bin/gpuflow-dev
	$(GO) build -trimpath -o bin/gpuflow ./cmd/gpuflow
	$(GO) build -trimpath -tags dev -o bin/gpuflow-dev ./cmd/gpuflow

test: postgres test/unit test/integration test/ui ## run every test (unit with -race, integration, the dashboard in a browser)

test/unit: ## unit tests, with the race detector
	$(GO) test -race -count=1 -timeout 10m $(UNIT_PKGS)

test/integration: postgres ## integration tests on a real Temporal server and PostgreSQL
	$(GO) test -count=1 -timeout 20m $(SERVER_PKGS)

test/ui: postgres ## the web dashboard: its unit tests, web/dist matches web/src, and a real browser (installs Chromium and npm packages)
	./web/e2e/setup.sh
	cd web && npx vitest run && ./scripts/check-dist.sh
	GPUFLOW_UI_TEST=1 $(GO) test -count=1 -timeout 10m -run '^TestDashboardInBrowser$$' ./internal/e2e/

chaos: postgres ## the full chaos suite on the production topology: 500 jobs through 50 kill -9s, PostgreSQL restarts and 60/120 s outages (GPUFLOW_CHAOS_* size it; the short run is in make test; docs/RELIABILITY.md)
	GPUFLOW_CHAOS=full $(GO) test -count=1 -timeout 3h -run '^Test(Chaos|UpgradeDrill)$$' -v ./internal/chaos/ | grep -E 'CHAOS|UPGRADE|^(ok|FAIL|---|panic)'

replay-capture: postgres ## run every workflow path on real stacks and add their histories to workflows/testdata/histories (docs/WORKFLOW-VERSIONING.md)
	GPUFLOW_CAPTURE_HISTORIES=1 $(GO) test -count=1 -timeout 45m -run '^TestCaptureHistories$$' -v ./internal/e2e/

web: ## rebuild the web dashboard into web/dist (commit it with its sources)
	cd web && npm ci --no-audit --no-fund && npm run build

lint: lint/go lint/gosec lint/vuln ## gofmt, go vet, staticcheck, gosec and govulncheck (tools and the vulnerability database go into .tools)

lint/go: $(TOOLS)/staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags dev ./cmd/...
	$(TOOLS)/staticcheck ./...

lint/gosec: $(TOOLS)/gosec ## gosec over the code of the production binary (exclusions: GOSEC_FLAGS and #nosec comments)
	$(TOOLS)/gosec $(GOSEC_FLAGS) ./...

lint/vuln: $(TOOLS)/govulncheck $(VULNDB)/index/db.json ## known vulnerabilities that ./cmd/... calls, from the local database; govulncheck.allow lists the accepted ones
	set -o pipefail; $(TOOLS)/govulncheck -db file://$(VULNDB) -format json ./cmd/... | $(GO) run ./internal/vulndb/vulngate -allow govulncheck.allow

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(TOOLS)/gosec:
	GOBIN=$(TOOLS) $(GO) install github.com/securego/gosec/v2/cmd/gosec@$(GOSEC_VERSION)

$(TOOLS)/govulncheck:
	GOBIN=$(TOOLS) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

$(VULNDB)/index/db.json:
	$(GO) run ./internal/vulndb/mkvulndb -version $(VULNDB_VERSION) -out $(VULNDB)

fuzz: ## run every fuzz target (func FuzzX in a _test.go) for FUZZTIME each (default 1m), one after another; a crasher is written to the package's testdata/fuzz/FuzzX/
	@set -e; git grep --untracked -E -o '^func Fuzz[A-Za-z0-9_]+' -- '*_test.go' | sed 's/:func / /' | while read -r file name; do \
	  pkg=./$$(dirname $$file); echo "== $$pkg $$name for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel $${FUZZ_PARALLEL:-1} $$pkg; \
	done

bench: postgres ## benchmarks and the scheduling simulation; results go into docs/BENCHMARKS.md by hand
	$(GO) test -run '^$$' -bench . -benchmem ./scheduler/... ./admission/
	$(GO) run ./cmd/gpuflow-sim
	set -o pipefail; GPUFLOW_BENCH=1 GPUFLOW_SCALE_JOBS=300 $(GO) test -count=1 -timeout 30m -run '^TestBench' -v ./internal/e2e/ | grep -E 'BENCH|^(ok|FAIL|---)' 
	@echo "TestBenchScale with $${GPUFLOW_SCALE_JOBS:-10000} cloud jobs at once (issue 9; the run above had 300 of them; GPUFLOW_SCALE_JOBS=N sizes this one)"
	set -o pipefail; GPUFLOW_BENCH=1 GPUFLOW_SCALE_JOBS=$${GPUFLOW_SCALE_JOBS:-10000} $(GO) test -count=1 -timeout 3h -run '^TestBenchScale$$' -v ./internal/e2e/ | grep -E 'BENCH|^(ok|FAIL|---)'

postgres:
	@./scripts/ensure-postgres.sh

clean: ## remove build outputs (not .data/)
	rm -rf bin
