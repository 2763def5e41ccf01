#!/usr/bin/env bash
# Compiles tests/c/replay_race_call.c with gcc against the static library of the FFI crate
# and checks that replaying the recorded race-call attempt prints "call won with hi", with
# the request body fed in several chunk sizes (one byte at a time included).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
lib="$target/debug/libdurable_futures_ffi.a"
vector="$root/tests/conformance/vectors/race-call/attempt-0001.req.bin"
expected='"call won with hi"'

(cd "$root" && cargo build --quiet -p durable-futures-ffi)

out="$target/ffi-c-test"
mkdir -p "$out"
gcc -std=c11 -Wall -Wextra -Werror -g -I "$here/../include" \
    "$here/c/replay_race_call.c" "$lib" -lpthread -ldl -lm -o "$out/replay_race_call"

failed=0
for chunk in 1 7 4096; do
    got="$("$out/replay_race_call" "$vector" "$chunk")"
    if [[ "$got" == "$expected" ]]; then
        echo "ok: replay_race_call (chunks of $chunk bytes) printed $got"
    else
        echo "FAIL: replay_race_call (chunks of $chunk bytes) printed '$got', expected '$expected'" >&2
        failed=1
    fi
done
exit $failed
