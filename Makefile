# gpuflow — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
TOOLS     := $(CURDIR)/.tools
STATICCHECK_VERSION := v0.8.2
# Packages whose tests link the embedded Temporal server: slow to build,
# so they run without the race detector and with a longer timeout.
SERVER_PKGS := ./internal/e2e/... ./internal/devtemporal/... ./internal/devstack/...
UNIT_PKGS    = $(shell $(GO) list ./... | grep -v -e /internal/e2e -e /internal/devtemporal -e /internal/devstack)

.PHONY: help run build test test/unit test/integration test/ui web lint bench clean postgres replay-capture

help: ## list the targets
	@grep -E '^[a-zA-Z/_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

run: postgres ## run the whole system in one process (API :8080, Temporal Web UI :8233)
	$(GO) build -tags dev -o bin/gpuflow-dev ./cmd/gpuflow
	./bin/gpuflow-dev dev

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

replay-capture: postgres ## run every workflow path on real stacks and add their histories to workflows/testdata/histories (docs/WORKFLOW-VERSIONING.md)
	GPUFLOW_CAPTURE_HISTORIES=1 $(GO) test -count=1 -timeout 45m -run '^TestCaptureHistories$$' -v ./internal/e2e/

web: ## rebuild the web dashboard into web/dist (commit it with its sources)
	cd web && npm ci --no-audit --no-fund && npm run build

lint: $(TOOLS)/staticcheck ## gofmt, go vet and staticcheck (installed into .tools by this Makefile)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags dev ./cmd/...
	$(TOOLS)/staticcheck ./...

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

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
