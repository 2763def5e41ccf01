#!/usr/bin/env bash
# Regenerates the C headers of the FFI crate and fails with a diff if the committed ones
# drifted from the Rust source.
#
#   rust/ffi/check-header.sh          # check (CI, `make ffi-test`)
#   rust/ffi/check-header.sh --write  # regenerate include/*.h in place
#
# cbindgen is pinned and installed once into the project-local .cache/tools (it pulls syn and
# serde, so it is kept out of the crate's build). include/durable_futures_cffi.h holds the
# same declarations with every preprocessor line resolved away, for cffi's `ffi.cdef`.
set -euo pipefail

CBINDGEN_VERSION=0.29.4
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="$root/.cache/tools"
cbindgen="$tools/bin/cbindgen"

if [[ ! -x "$cbindgen" ]] || [[ "$("$cbindgen" --version)" != "cbindgen $CBINDGEN_VERSION" ]]; then
    echo "installing cbindgen $CBINDGEN_VERSION into $tools" >&2
    cargo install --quiet --locked --version "$CBINDGEN_VERSION" --root "$tools" cbindgen
fi

mode="check"
[[ "${1:-}" == "--write" ]] && mode="write"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# cbindgen warns about the crate's `const _: () = assert!(..)` items; they are not API.
"$cbindgen" --quiet --config "$here/cbindgen.toml" --crate durable-futures-ffi \
    --output "$tmp/durable_futures.h" "$here"

# The cffi variant: evaluate the header's conditionals for a C99 compiler (not C++, not
# C23), drop #include/#define lines, keep declarations and comments. Any conditional this
# does not know is an error, so a new cbindgen construct cannot slip through half-stripped.
awk '
function active() { for (i = 1; i <= depth; i++) if (!stack[i]) return 0; return 1 }
/^#/ {
    line = $0
    sub(/[ \t]*\/\/.*$/, "", line)
    sub(/[ \t]*\/\*.*\*\/$/, "", line)
    if (line ~ /^#if defined\(__cplusplus\) \|\| __STDC_VERSION__ >= 202311L$/) { stack[++depth] = 0; next }
    if (line ~ /^#if __STDC_VERSION__ >= 202311L$/) { stack[++depth] = 0; next }
    if (line ~ /^#ifdef __cplusplus$/) { stack[++depth] = 0; next }
    if (line ~ /^#ifndef __cplusplus$/) { stack[++depth] = 1; next }
    if (line ~ /^#ifndef DURABLE_FUTURES_H$/) { stack[++depth] = 1; next }
    if (line ~ /^#else$/) { stack[depth] = !stack[depth]; next }
    if (line ~ /^#endif$/) { depth--; next }
    if (line ~ /^#(define|include) /) next
    printf("check-header.sh: unknown preprocessor line %d: %s\n", NR, $0) > "/dev/stderr"
    failed = 1
    exit 2
}
active() { print }
END { if (!failed && depth != 0) { print "check-header.sh: unbalanced conditionals" > "/dev/stderr"; exit 2 } }
' "$tmp/durable_futures.h" | cat -s > "$tmp/durable_futures_cffi.h"

# Both headers must compile as C; the cffi one with the standard headers included first.
if command -v gcc >/dev/null; then
    gcc -std=c99 -Wall -Wextra -Werror -fsyntax-only -x c "$tmp/durable_futures.h"
    gcc -std=c99 -Wall -Wextra -Werror -fsyntax-only -include stdbool.h -include stddef.h \
        -include stdint.h -x c "$tmp/durable_futures_cffi.h"
fi

status=0
for h in durable_futures.h durable_futures_cffi.h; do
    if [[ "$mode" == "write" ]]; then
        cp "$tmp/$h" "$here/include/$h"
    elif ! diff -u "$here/include/$h" "$tmp/$h"; then
        echo "rust/ffi/include/$h is out of date: run rust/ffi/check-header.sh --write" >&2
        status=1
    fi
done
[[ "$mode" == "write" ]] && echo "wrote $here/include/durable_futures.h and durable_futures_cffi.h"
exit $status
