# Every target bootstraps the virtual environment it needs; a second run with nothing
# changed reinstalls nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h csrc/*.py)

.PHONY: all demo test bench clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Editable install: cffi builds earwitness/_native*.so in place, so tests see the sources.
$(STAMP): $(SOURCES) | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	-$(PY) -m pip install -q 'aubio>=0.4.9,<0.5' || echo "aubio did not install; its benchmark row is skipped"
	touch $@

demo: $(STAMP) console-js
	$(PY) -m simulator.demo

# The console's JavaScript (Leaflet) from npm, as fusion/console/package-lock.json pins it, into
# fusion/console/node_modules (never into git); the console serves it from there.
CONSOLE_JS := fusion/console/node_modules/.package-lock.json
.PHONY: console-js
console-js: $(CONSOLE_JS)

$(CONSOLE_JS): fusion/console/package.json fusion/console/package-lock.json
	@command -v npm >/dev/null || { echo "npm missing: apt-get install nodejs npm (.ci/run does)"; exit 1; }
	cd fusion/console && npm ci --no-audit --no-fund
	touch $@

# Everything but hardware in the loop (make hil, which .ci/run runs next) and the package
# test (make deb-test: it builds under emulation for tens of minutes).
test: $(STAMP) console-js
	$(PY) -m pytest -q -m "not hil and not package and not cluster and not image"

# Hardware in the loop (tests/test_hil.py): a virtual microphone, a GPS on a pty, the site
# broker with TLS and its ACL, the real node and fusion processes. Needs pulseaudio,
# libasound2-plugins, libportaudio2 (.ci/run installs them).
.PHONY: hil
hil: $(STAMP)
	$(PY) -m pytest -q -m "hil and not package and not image"

# make deb [ARCH=arm64]: the node's .deb in build/; another ARCH is built inside a Debian 12
# rootfs of it under qemu-user-static (hardware/packaging/cross-deb.sh; rootfs cached in build/ARCH).
# make deb-test [ARCH=arm64]: builds it, installs it with dpkg into a clean rootfs of ARCH and
# compares `earwitness detect` there with this machine's (tests/test_package.py).
NATIVE_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
ARCH ?= $(NATIVE_ARCH)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
DEB := build/earwitness-node_$(VERSION)_$(ARCH).deb
# rebuilt only when what goes into it changed (hardware/image/ goes into the image only)
DEB_INPUTS := $(SOURCES) $(filter-out hardware/image/%,$(shell git ls-files earwitness edge fusion simulator hardware 2>/dev/null))
.PHONY: deb deb-test
# a build that failed half-way leaves no .deb that looks up to date
.DELETE_ON_ERROR:
deb: $(DEB)

$(DEB): $(DEB_INPUTS)
ifeq ($(ARCH),$(NATIVE_ARCH))
	hardware/packaging/build-deb.sh build
else
	hardware/packaging/cross-deb.sh $(ARCH) build
endif

deb-test: $(STAMP)
	EARWITNESS_DEB_ARCH=$(ARCH) $(PY) -m pytest -q -m package

# The cluster engine (tests/test_cluster.py): a 3-server NATS JetStream cluster on loopback
# (nats-server; .ci/run installs it), fusion workers on PostgreSQL, servers and workers killed.
.PHONY: cluster
cluster: $(STAMP)
	$(PY) -m pytest -q -m cluster

# make image: build/earwitness-node-arm64.img, Debian 12 arm64 for the Raspberry Pi with the node's
# package (make deb ARCH=arm64) installed and configured from hardware/ (hardware/image/build-image.sh;
# the operating system is made once under emulation and kept in build/arm64/image-rootfs).
# make image-test: boots it in qemu-system-aarch64 without network, provisions it, lets its node
# detect the shots of a WAV and compares its outbox with `earwitness detect` (tests/test_image.py).
IMAGE := build/earwitness-node-arm64.img
.PHONY: image image-test
image:
	$(MAKE) ARCH=arm64 $(IMAGE)

$(IMAGE): $(DEB) $(shell git ls-files hardware 2>/dev/null)
	hardware/image/build-image.sh $(DEB) $@

image-test: $(STAMP)
	$(PY) -m pytest -q -m image

# The quick loop: no broker, database, node or server process, nothing slower than ~5 s.
.PHONY: test-fast
test-fast: $(STAMP) console-js
	$(PY) -m pytest -q -m "not slow and not integration and not hil and not browser and not cluster and not image"

bench: $(BENCH_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info fusion/console/node_modules earwitness/_native*.so earwitness/_native.c earwitness/_native.o .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# make lint: ruff (style, imports, bugbear, complexity), the import contracts of README's
# Layout (lint-imports) and mypy; each runs, the target fails if any failed.
LINT_STAMP := $(VENV)/.installed-lint

.PHONY: lint

$(LINT_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $@

lint: $(LINT_STAMP)
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/lint-imports --no-cache || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status
