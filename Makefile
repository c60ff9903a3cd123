# mlmodel-operator: every entry point. `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/mlmodel-operator
export MLMODEL_CACHE := $(CACHE)
CLUSTER_DIR := $(CACHE)/cluster

.PHONY: all setup tools build test unit lint demo demo-stop cluster-up cluster-down kubeconfig crd bench clean

all: build

setup: ## toolchain pieces the build needs (rustup target, Debian packages), idempotent
	@hack/setup.sh

tools: ## control-plane binaries built from source, cached by version
	@hack/build-tools.sh >/dev/null

build: setup
	cargo build

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test: setup ## the whole suite: lint, unit, then integration on the local cluster
	@hack/test.sh

demo: setup ## the operator's main job on the local cluster
	@hack/demo.sh

demo-stop: ## ends the demo's operator and the local cluster
	@if [ -f $(CACHE)/demo/operator.pid ]; then kill $$(cat $(CACHE)/demo/operator.pid) 2>/dev/null || true; rm -f $(CACHE)/demo/operator.pid; fi
	@hack/cluster.sh down

cluster-up: tools
	@hack/cluster.sh up

cluster-down:
	@hack/cluster.sh down

kubeconfig: ## prints the local cluster's kubeconfig path
	@echo $(CLUSTER_DIR)/kubeconfig

crd: ## regenerates the committed CRD
	cargo run -q -- crd > deploy/crd/mlmodel.dev_mlmodels.yaml

bench: setup ## benchmarks that print figures (not part of make test)
	cargo bench -p mlmodel-operator --bench render
	hack/bench-fetch.sh

clean:
	cargo clean
