# The project's commands. The README's two fresh-machine commands are `make run` and
# `make test`; CI (.ci/run) calls `make test`. Python tools live in a project-local .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test bench lint py-lint rust-test py-test develop venv clean

include rust/ffi/ffi.mk

$(VENV)/.installed: requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

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
	$(VENV)/bin/ruff check python tests examples benches
	$(PY) -m mypy --strict python/durable_futures examples
	$(PY) -m mypy.stubtest durable_futures._core

py-test: develop
	$(PY) -m pytest -q

test: lint rust-test ffi-test py-lint py-test

# Replays every recorded conformance journal through the core and prints the results.
run:
	$(CARGO) run --release --quiet -p durable-futures-core --example replay_vectors -- tests/conformance/vectors

# Side-by-side benchmarks: the core and the C ABI (criterion), the Python facade against
# restate-sdk (pytest-benchmark, peers from requirements-bench.txt).
bench: develop
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m pytest benches -s -q -o testpaths=benches
	$(CARGO) bench -p durable-futures-core
	$(CARGO) bench -p durable-futures-ffi

clean:
	rm -rf target $(VENV)
