# sinkhost — one entry point for people and CI.
#   make run    installs what is missing, starts NATS + a dev receiver, runs sinkhost on config.d
#   make test   lint + build + every test (starts its own servers)
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO      ?= cargo
TOOLS      := $(CURDIR)/.tools
VENV       := $(TOOLS)/venv
NATS       := $(VENV)/bin/nats-server
RUNDIR     := $(CURDIR)/.run
WASM_OUT   := target/wasm32-wasip2/release
BIN        := target/release/sinkhost
PLUGIN_DIR := target/release/plugins
# crate name -> the plugin name config.d uses
PLUGINS    := http-webhook mailer-apikey drupal-stripe
# plugins only the tests load (target/release/test-plugins/<name>.wasm)
TEST_PLUGINS := test-hostile
TEST_PLUGIN_DIR := target/release/test-plugins

export NATS_SERVER_BIN := $(NATS)

.PHONY: help setup build host plugins run test lint fmt bench clean

help:
	@echo "make run    - start a local NATS + dev receiver and run sinkhost on config.d"
	@echo "make test   - lint, build and run every test"
	@echo "make build  - build the host and the built-in plugins (target/release)"
	@echo "make bench  - print the plugin cost per delivery"
	@echo "make setup  - install the wasm32-wasip2 target and nats-server (into .tools/)"

setup: $(NATS) .tools/wasm-target

.tools/wasm-target:
	rustup target add wasm32-wasip2
	@mkdir -p .tools && touch $@

$(NATS): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

build: host plugins

host:
	$(CARGO) build --release -p sinkhost

plugins: .tools/wasm-target
	CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
	  $(CARGO) build --release --target wasm32-wasip2 $(addprefix -p ,$(PLUGINS) $(TEST_PLUGINS))
	@mkdir -p $(PLUGIN_DIR) $(TEST_PLUGIN_DIR)
	@for p in $(PLUGINS); do cp $(WASM_OUT)/$${p//-/_}.wasm $(PLUGIN_DIR)/$$p.wasm; done
	@for p in $(TEST_PLUGINS); do cp $(WASM_OUT)/$${p//-/_}.wasm $(TEST_PLUGIN_DIR)/$${p#test-}.wasm; done
	@ls -l $(PLUGIN_DIR) $(TEST_PLUGIN_DIR)

# Foreground sinkhost; NATS (port 4222, data in .run/nats) and the dev receiver
# (port 8091, output in .run/receiver.log) run in the background until it stops.
run: setup build
	@mkdir -p $(RUNDIR)
	@$(NATS) -js -a 127.0.0.1 -p 4222 --store_dir $(RUNDIR)/nats > $(RUNDIR)/nats.log 2>&1 & echo $$! > $(RUNDIR)/nats.pid
	@python3 scripts/receiver.py 8091 > $(RUNDIR)/receiver.log 2>&1 & echo $$! > $(RUNDIR)/receiver.pid
	@trap 'kill $$(cat $(RUNDIR)/nats.pid) $$(cat $(RUNDIR)/receiver.pid) 2>/dev/null || true' EXIT; \
	  echo "NATS on nats://127.0.0.1:4222, receiver on http://127.0.0.1:8091 (tail -f .run/receiver.log)"; \
	  SINKHOST_PLUGIN_DIR=$(PLUGIN_DIR) $(BIN) run --config-dir config.d

test: setup lint build
	$(CARGO) test --release --workspace

lint: .tools/wasm-target
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target wasm32-wasip2 -p sinkhost-sdk $(addprefix -p ,$(PLUGINS) $(TEST_PLUGINS)) -- -D warnings

# Figures, never pass/fail: the wasm path's cost per delivery.
bench: build
	$(CARGO) bench -p sinkhost --bench plugin_cost

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(RUNDIR)
