# mlmodel-operator: every entry point. `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/mlmodel-operator
export MLMODEL_CACHE := $(CACHE)
CLUSTER_DIR := $(CACHE)/cluster

.PHONY: all setup tools build test unit lint demo cluster-up cluster-down kubeconfig crd bench clean

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

cluster-up: tools
	@hack/cluster.sh up

cluster-down:
	@hack/cluster.sh down

kubeconfig: ## prints the local cluster's kubeconfig path
	@echo $(CLUSTER_DIR)/kubeconfig

crd: ## regenerates the committed CRD
	cargo run -q -- crd > deploy/crd/mlmodel.dev_mlmodels.yaml

clean:
	cargo clean
