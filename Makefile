# knitcache: set-up and the two commands a newcomer runs (see README.md).
#
#   make demo    build, then start the ERP simulator with knitcache in front of it
#   make test    formatting, lints, every test, a check of every shipped config, and of the
#                Prometheus rules (promtool)
#   make fuzz    every fuzz target for FUZZ_SECS seconds each (docs/FUZZING.md); not in `make test`
#
# Both install what they need first: pingora needs cmake and a C toolchain (zlib-ng is built
# from source), installed with apt-get when missing (`setup-build`), as is redis-server, which the
# cluster tests start on loopback ports of their own; `make test` also checks the
# deployment files with validators installed into a venv in target/deploy-tools from PyPI
# (`setup-deploy-tools`, which needs python3 with venv). `make setup` installs both.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := cmake build-essential pkg-config chromium prometheus redis-server
DEPLOY_TOOLS := target/deploy-tools

.PHONY: setup setup-build setup-deploy-tools demo test check-configs check-prometheus check-deploy bench load-setup load compare soak fuzz clean

setup: setup-build setup-deploy-tools

setup-build:
	@missing=""; \
	command -v cmake >/dev/null || missing="$$missing cmake"; \
	command -v cc >/dev/null || missing="$$missing build-essential"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }

# The deployment validators (deploy/tools-requirements.txt, binary wheels) in a venv; reinstalled
# when the list changes.
setup-deploy-tools: $(DEPLOY_TOOLS)/.installed

$(DEPLOY_TOOLS)/.installed: deploy/tools-requirements.txt
	@command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing: python3 python3-venv"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3 python3-venv; }
	rm -rf $(DEPLOY_TOOLS)
	python3 -m venv $(DEPLOY_TOOLS)
	$(DEPLOY_TOOLS)/bin/pip install -q --disable-pip-version-check --only-binary=:all: -r deploy/tools-requirements.txt
	touch $@

demo: setup-build
	$(CARGO) run --example demo

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --all-targets
	$(MAKE) check-configs
	$(MAKE) check-prometheus
	$(MAKE) check-deploy

check-configs:
	@for f in config/*.yaml; do $(CARGO) run -q -- check -c $$f >/dev/null || exit 1; echo "ok: $$f"; done

check-prometheus:
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/knitcache.rules.yml
	promtool test rules deploy/prometheus/knitcache.rules.test.yml

bench: setup-build
	$(CARGO) bench --bench hot_path --bench storage --bench observe

# The load suite (benches/load.rs, docs/PERFORMANCE.md) drives wrk; the comparison also runs
# nginx and Varnish. Never part of `make test`.
LOAD_PACKAGES := wrk nginx-light varnish
load-setup: setup-build
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v varnishd >/dev/null || missing="$$missing varnish"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(LOAD_PACKAGES); \
	fi

load: load-setup
	$(CARGO) bench --bench load -- $(ARGS)

compare: load-setup
	$(CARGO) bench --bench load -- --scenario compare $(ARGS)

soak: load-setup
	$(CARGO) bench --bench load -- --scenario soak $(ARGS)

# Dockerfile, compose, Kubernetes, systemd unit, scripts, CI workflow and the admin API's OpenAPI
# document (deploy/validate.py).
check-deploy: setup-deploy-tools
	$(DEPLOY_TOOLS)/bin/python deploy/validate.py

# The fuzz targets (fuzz/, docs/FUZZING.md), each for FUZZ_SECS seconds, from its committed seeds
# (the config loader's also from the shipped config/*.yaml); new inputs are kept in fuzz/corpus/,
# a crash is written to fuzz/artifacts/ and fails the run. Never part of `make test`.
# `-s none`: cargo-fuzz's default AddressSanitizer needs `-Zsanitizer`, a nightly-only flag, and
# this project builds on stable. Without it the coverage instrumentation (`-Cpasses=sancov-module`
# and its `-Cllvm-args`) is all stable; the Rust code's own bounds and overflow checks (cargo-fuzz
# builds with debug assertions) catch what the sanitizer would in safe code. libFuzzer is built
# from the C++ sources that libfuzzer-sys ships (a C++ compiler; pingora needs cmake, as above).
FUZZ_SECS ?= 60
FUZZ_TARGETS ?= config route_match canonical cache_key cache_control vary parsed_meta object
fuzz:
	@command -v cmake >/dev/null && command -v c++ >/dev/null || { \
		echo "installing: cmake build-essential"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq cmake build-essential; }
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		seeds=fuzz/seeds/$$t; [ $$t = config ] && seeds="$$seeds config"; \
		mkdir -p fuzz/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECS) s"; \
		$(CARGO) fuzz run -s none $$t fuzz/corpus/$$t $$seeds -- \
			-max_total_time=$(FUZZ_SECS) -timeout=10 -print_final_stats=1 || exit 1; \
	done

clean:
	$(CARGO) clean
