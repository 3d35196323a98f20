# knitcache: set-up and the two commands a newcomer runs (see README.md).
#
#   make demo    build, then start the ERP simulator with knitcache in front of it
#   make test    formatting, lints, every test, a check of every shipped config, and of the
#                Prometheus rules (promtool)
#
# Both run `setup` first: pingora needs cmake and a C toolchain (zlib-ng is built from
# source); the dashboard test needs headless Chromium and the metrics and alert-rule checks
# need promtool (Debian's prometheus package). They are installed with apt-get when missing.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := cmake build-essential pkg-config chromium prometheus

.PHONY: setup demo test check-configs check-prometheus bench load-setup load compare soak clean

setup:
	@missing=""; \
	command -v cmake >/dev/null || missing="$$missing cmake"; \
	command -v cc >/dev/null || missing="$$missing build-essential"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }

demo: setup
	$(CARGO) run -- demo

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets
	$(MAKE) check-configs
	$(MAKE) check-prometheus

check-configs:
	@for f in config/*.yaml; do $(CARGO) run -q -- check -c $$f >/dev/null || exit 1; echo "ok: $$f"; done

check-prometheus:
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/knitcache.rules.yml
	promtool test rules deploy/prometheus/knitcache.rules.test.yml

bench: setup
	$(CARGO) bench --bench hot_path --bench storage --bench observe

# The load suite (benches/load.rs, docs/PERFORMANCE.md) drives wrk; the comparison also runs
# nginx and Varnish. Never part of `make test`.
LOAD_PACKAGES := wrk nginx-light varnish
load-setup: setup
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

clean:
	$(CARGO) clean
