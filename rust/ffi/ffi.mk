# Targets of the C ABI crate. Include it from the top-level Makefile
# (`include rust/ffi/ffi.mk`, then add `ffi-test` to `test`), or run it on its own:
# `make -f rust/ffi/ffi.mk ffi-test`. The cffi tests (tests/test_ffi.py) run with pytest.

FFI_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CARGO ?= cargo

.PHONY: ffi-test ffi-header

# Header drift check, build (static + shared library), C program replaying race-call.
ffi-test:
	$(FFI_DIR)/check-header.sh
	$(CARGO) build --quiet -p durable-futures-ffi
	$(FFI_DIR)/tests/run_c_test.sh

# Regenerates include/durable_futures.h and include/durable_futures_cffi.h.
ffi-header:
	$(FFI_DIR)/check-header.sh --write
