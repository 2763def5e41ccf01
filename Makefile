# The project's commands. The README's two fresh-machine commands are `make run` and
# `make test`; CI (.ci/run) calls `make test`. Python tools live in a project-local .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

# The Python suite starts restate-server, which asks the internet for newer releases at
# startup (no setting turns that off). The suite therefore runs in a private network
# namespace that has only loopback: nothing a test starts can reach beyond this machine.
NETNS := $(shell unshare --net true 2>/dev/null && echo yes)
ifeq ($(NETNS),yes)
ISOLATED := unshare --net -- sh -c 'ip link set lo up && exec "$$@"' --
else
ISOLATED :=
endif

.PHONY: run replay-vectors test bench lint py-lint rust-test py-test develop venv clean mutants wheel wheel-test windows-check docs chromium

include rust/ffi/ffi.mk

# The dev tools are the `dev` dependency group of pyproject.toml (pip 25.1+ installs groups).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check pip==25.3
	$(PY) -m pip install -q --disable-pip-version-check --group dev
	touch $@

venv: $(VENV)/.installed

# A release wheel for Linux as CI builds it: manylinux 2.17 (linked with zig against glibc
# 2.17, so Debian 11, Ubuntu 20.04, RHEL 8, Amazon Linux 2 install it), symbols stripped,
# abi3; checked with auditwheel and `twine check --strict`, plus the sdist. `make wheel-test`
# installs the wheel into a fresh venv (no Rust, no editable source) and runs the test
# suite's parts that need no restate-server against it.
WHEEL_DIR := dist
$(VENV)/.release-installed: $(VENV)/.installed
	$(PY) -m pip install -q --disable-pip-version-check --group release
	touch $@

wheel: $(VENV)/.release-installed
	rm -rf $(WHEEL_DIR)
	PATH=$(abspath $(VENV))/bin:$$PATH VIRTUAL_ENV=$(abspath $(VENV)) \
		$(VENV)/bin/maturin build --release --zig --compatibility manylinux2014 --out $(WHEEL_DIR)
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin sdist --out $(WHEEL_DIR)
	$(PY) tools/check_wheel.py $(WHEEL_DIR)

# The engine and the bindings compile for Windows (x86_64-pc-windows-gnu): the bundled SQLite
# is compiled by zig's C compiler (the release group), through a wrapper that drops the
# --target=... cc-rs adds. rust-toolchain.toml names the target's standard library, but rustup
# fetches it on its own only where auto-install is on (RUSTUP_AUTO_INSTALL=0 turns it off):
# `rustup target add` does, and is a no-op once it is there.
ZIG_CC_WINDOWS := .cache/tools/bin/zig-cc-windows
$(ZIG_CC_WINDOWS): $(VENV)/.release-installed
	mkdir -p $(dir $@)
	printf '#!/bin/sh\nfor a in "$$@"; do shift; case "$$a" in --target=*) ;; *) set -- "$$@" "$$a" ;; esac; done\nexec %s -m ziglang cc -target x86_64-windows-gnu "$$@"\n' '$(abspath $(PY))' > $@
	printf '#!/bin/sh\nexec %s -m ziglang ar "$$@"\n' '$(abspath $(PY))' > $(dir $@)zig-ar
	chmod +x $@ $(dir $@)zig-ar

windows-check: $(ZIG_CC_WINDOWS)
	rustup target add x86_64-pc-windows-gnu
	CC_x86_64_pc_windows_gnu=$(abspath $(ZIG_CC_WINDOWS)) AR_x86_64_pc_windows_gnu=$(abspath $(dir $(ZIG_CC_WINDOWS))zig-ar) \
		$(CARGO) check --quiet --target x86_64-pc-windows-gnu -p durable-futures-engine -p durable-futures-python

# The oldest Python this machine has (3.10 where installed; CI's matrix runs 3.10 and 3.13).
OLDEST_PYTHON ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 $(PYTHON); do \
	$$p -c '' 2>/dev/null && { echo $$p; break; }; done)

wheel-test: wheel
	rm -rf .cache/wheel-venv
	$(OLDEST_PYTHON) -m venv .cache/wheel-venv
	.cache/wheel-venv/bin/python -m pip install -q --disable-pip-version-check pip==25.3
	.cache/wheel-venv/bin/python -m pip install -q --disable-pip-version-check $(WHEEL_DIR)/*.whl pytest==8.4.2 hypothesis==6.168.5 cffi==2.0.0 cryptography==46.0.3 mypy==1.18.2 opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 uvicorn==0.54.0 httptools==0.9.0
	cd tests && PATH=/usr/bin:/bin ../.cache/wheel-venv/bin/python -m pytest -q -p no:cacheprovider -m "not e2e" --rootdir=.. -c ../pyproject.toml --ignore=test_ffi.py

# restate-server, pinned in package.json, for the end-to-end tests.
node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# Builds the extension module and installs the package into .venv (editable).
develop: venv
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
		$(VENV)/bin/maturin develop --release --quiet

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

rust-test:
	$(CARGO) test --workspace --quiet

# ruff, mypy --strict over the package and the examples, and the hand-written stub of the
# extension checked against the compiled module.
py-lint: develop
	$(VENV)/bin/ruff check python tests examples benches tools
	$(PY) -m mypy --strict python/durable_futures examples
	$(PY) -m mypy.stubtest durable_futures._core

# Chromium, Debian's package, for the browser test of the admin API's timeline pages
# (tests/test_ui.py drives it with playwright, which downloads no browser of its own).
# Installed only where /usr/bin/chromium is missing and we are root; elsewhere the test skips.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends chromium >/dev/null \
			|| echo "note: installing chromium failed; the browser test skips"; \
		else echo "note: /usr/bin/chromium is missing and this is not root; the browser test skips"; fi; \
	fi

py-test: develop node_modules/.installed chromium
	@[ -n "$(ISOLATED)" ] || echo "note: no network namespace available; running the suite unisolated"
	$(ISOLATED) $(PY) -m pytest -q

test: lint rust-test ffi-test windows-check py-lint py-test docs

# The documentation site: docs/ -> site/ (MkDocs, Material, mkdocstrings; pinned in
# requirements-docs.txt). --strict fails on any warning: a broken link or anchor, a page left
# out of the nav, a docstring the API reference cannot render. The pages must load nothing
# from the network (no script, stylesheet or font by absolute URL), which the greps check.
# The code samples of the pages run in tests/test_docs.py.
$(VENV)/.docs-installed: requirements-docs.txt $(VENV)/.installed
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-docs.txt
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
	@! grep -rlE '<(script|link)[^>]+(src|href)="(https?:)?//' site --include='*.html' \
		|| { echo "site/: the pages above load a script or stylesheet from the network"; exit 1; }
	@! grep -rlE 'url\(["'"'"']?(https?:)?//' site --include='*.css' \
		|| { echo "site/: the stylesheets above load a font or image from the network"; exit 1; }

# The README's first command: builds and installs the package, then runs every example
# handler on the embedded engine (a temporary SQLite file) and prints the results and one
# journal.
run: develop
	$(PY) examples/run_local.py

# Replays every recorded conformance journal through the core and prints the results.
replay-vectors:
	$(CARGO) run --release --quiet -p durable-futures-core --example replay_vectors -- tests/conformance/vectors

# Side-by-side benchmarks: the core and the C ABI (criterion), the Python facade against
# restate-sdk (pytest-benchmark, peers from requirements-bench.txt).
bench: develop node_modules/.installed
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	$(ISOLATED) $(PY) -m pytest benches -s -q -o testpaths=benches
	$(CARGO) bench -p durable-futures-core
	$(CARGO) bench -p durable-futures-ffi

# Mutation testing (not part of `make test`: it takes hours over every area). One area, one
# slice of it, or only what changed since a git ref:
#   make mutants AREA=vm SHARD=0/4     make mutants DIFF=main
# Areas: vm protocol core store engine python (tools/mutants.py). Prints the kill rate per
# area and every surviving mutant; results stay in .cache/mutants/.
CARGO_MUTANTS_VERSION := 27.1.0
MUTANTS_ARGS = $(foreach a,$(AREA),--area $(a)) $(if $(SHARD),--shard $(SHARD)) $(if $(DIFF),--diff $(DIFF))

.cache/tools/bin/cargo-mutants:
	$(CARGO) install --quiet --locked --root .cache/tools cargo-mutants --version $(CARGO_MUTANTS_VERSION)

$(VENV)/.mutants-installed: requirements-mutants.txt $(VENV)/.installed
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-mutants.txt
	touch $@

mutants: develop .cache/tools/bin/cargo-mutants $(VENV)/.mutants-installed
	$(PY) tools/mutants.py $(MUTANTS_ARGS)

clean:
	rm -rf target $(VENV)
