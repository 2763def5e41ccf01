/*
 * Replays a recorded `race_call` attempt through the durable-futures C ABI and prints the
 * handler's output (the JSON value of the OutputCommand the VM wrote).
 *
 *   replay_race_call <attempt.req.bin> [chunk-size]
 *
 * The handler (tests/conformance/README.md): a durable timer of 30 s (no name), then a call
 * to Conformance/echo with the input; select the first to complete; return
 * "call won with <result>" or "sleep won".
 *
 * Exit status: 0 on Output + End, 1 on an error code from the library, 2 when the VM
 * suspended or the output is not Output + End.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "durable_futures.h"

#define CONTENT_TYPE "application/vnd.restate.invocation.v6"

static DfSlice slice(const void *p, size_t len) {
    DfSlice s = {(const uint8_t *)p, len};
    return s;
}

static DfSlice cstr(const char *s) { return slice(s, strlen(s)); }

/* Reports a failing call with the VM's last error and exits. */
static void check(DfVm *vm, int32_t code, const char *what) {
    if (code == DF_CODE_OK) return;
    DfBuffer msg = {0};
    if (vm != NULL) {
        df_vm_last_error(vm, &msg);
    } else {
        df_last_error_message(&msg);
    }
    fprintf(stderr, "%s failed with code %d: %.*s\n", what, code, (int)msg.len,
            msg.ptr ? (const char *)msg.ptr : "");
    df_buffer_free(&msg);
    df_vm_free(vm);
    exit(1);
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

/* ---- a JSON string codec, just enough for this handler ----------------------------------- */

/* Decodes a JSON string literal (no \u escapes) into a NUL-terminated malloc'd string. */
static char *json_string_decode(const uint8_t *p, size_t len) {
    if (len < 2 || p[0] != '"' || p[len - 1] != '"') return NULL;
    char *out = malloc(len), *o = out;
    for (size_t i = 1; i + 1 < len; i++) {
        char c = (char)p[i];
        if (c == '\\' && i + 2 < len) {
            c = (char)p[++i];
            switch (c) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            default: break; /* \" \\ \/ */
            }
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

/* Encodes `s` as a JSON string literal into a malloc'd buffer. */
static char *json_string_encode(const char *s) {
    char *out = malloc(strlen(s) * 6 + 3), *o = out;
    *o++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            o += sprintf(o, "\\u%04x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* ---- reading the VM's output frames ----------------------------------------------------- */

static uint64_t varint(const uint8_t **p, const uint8_t *end) {
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
    }
    return v;
}

/* Finds length-delimited field `field` in a protobuf message. */
static int pb_bytes(const uint8_t *p, size_t len, uint32_t field, const uint8_t **out,
                    size_t *out_len) {
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t key = varint(&p, end);
        uint32_t wire = key & 7;
        if (wire == 0) {
            varint(&p, end);
        } else if (wire == 1) {
            p += 8;
        } else if (wire == 5) {
            p += 4;
        } else if (wire == 2) {
            uint64_t n = varint(&p, end);
            if (n > (uint64_t)(end - p)) return 0;
            if ((key >> 3) == field) {
                *out = p;
                *out_len = (size_t)n;
                return 1;
            }
            p += n;
        } else {
            return 0;
        }
    }
    return 0;
}

/* Prints the JSON value of the OutputCommand in `out` and checks that EndMessage follows. */
static int print_output(const uint8_t *data, size_t len) {
    const uint8_t *value = NULL;
    size_t value_len = 0;
    uint16_t last = 0xffff;
    size_t at = 0;
    while (at + 8 <= len) {
        uint16_t type = (uint16_t)(data[at] << 8 | data[at + 1]);
        uint32_t n = (uint32_t)data[at + 4] << 24 | (uint32_t)data[at + 5] << 16 |
                     (uint32_t)data[at + 6] << 8 | (uint32_t)data[at + 7];
        const uint8_t *payload = data + at + 8;
        if (at + 8 + n > len) break;
        if (type == 0x0401) { /* OutputCommandMessage: 14 Value value { 1 bytes content } */
            const uint8_t *v;
            size_t vl;
            if (pb_bytes(payload, n, 14, &v, &vl)) {
                if (!pb_bytes(v, vl, 1, &value, &value_len)) {
                    value = v; /* an empty Value message */
                    value_len = 0;
                }
            }
        }
        last = type;
        at += 8 + n;
    }
    if (value == NULL || last != 0x0003 || at != len) {
        fprintf(stderr, "expected OutputCommand then EndMessage (last frame 0x%04x)\n", last);
        return 2;
    }
    printf("%.*s\n", (int)value_len, (const char *)value);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <attempt.req.bin> [chunk-size]\n", argv[0]);
        return 1;
    }
    size_t chunk = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 7;
    if (chunk == 0) chunk = 1;
    size_t body_len;
    unsigned char *body = read_file(argv[1], &body_len);

    DfVm *vm = NULL;
    check(NULL, df_vm_new(cstr(CONTENT_TYPE), &vm), "df_vm_new");

    /* 1. Feed the request body, in chunks, and close the input (request/response mode). */
    for (size_t at = 0; at < body_len; at += chunk) {
        size_t n = body_len - at < chunk ? body_len - at : chunk;
        check(vm, df_vm_notify_input(vm, slice(body + at, n)), "df_vm_notify_input");
    }
    check(vm, df_vm_notify_input_closed(vm), "df_vm_notify_input_closed");
    free(body);
    bool ready = false;
    check(vm, df_vm_is_ready_to_execute(vm, &ready), "df_vm_is_ready_to_execute");
    if (!ready) {
        fprintf(stderr, "the journal is incomplete\n");
        df_vm_free(vm);
        return 1;
    }

    /* 2. The handler. */
    DfInput input = {0};
    check(vm, df_vm_sys_input(vm, &input), "df_vm_sys_input");

    DfHandle sleep;
    uint64_t now_ms = (uint64_t)time(NULL) * 1000;
    check(vm, df_vm_sys_sleep(vm, cstr(""), now_ms + 30000, &sleep), "df_vm_sys_sleep");

    DfTarget echo = {0};
    echo.service = cstr("Conformance");
    echo.handler = cstr("echo");
    DfHandle call_id, call_result;
    check(vm,
          df_vm_sys_call(vm, &echo, slice(input.input.ptr, input.input.len), cstr(""), &call_id,
                         &call_result),
          "df_vm_sys_call");
    df_input_free(&input);

    DfHandle children[2] = {sleep, call_result};
    DfHandle selector;
    check(vm, df_vm_selector(vm, children, 2, &selector), "df_vm_selector");
    DfAwaitResult next;
    check(vm, df_vm_select_next(vm, selector, &next), "df_vm_select_next");
    if (next.kind != DF_AWAIT_KIND_SELECTED) {
        /* Input is closed, so "pending" cannot happen; suspended means the journal has no
         * completion for either future. */
        fprintf(stderr, "select_next: await kind %u\n", next.kind);
        df_vm_free(vm);
        return 2;
    }
    df_vm_release(vm, selector);

    char *result;
    if (next.handle == sleep) {
        result = json_string_encode("sleep won");
    } else {
        DfValue value = {0};
        check(vm, df_vm_take_notification(vm, call_result, &value), "df_vm_take_notification");
        if (value.kind != DF_VALUE_KIND_VALUE) {
            fprintf(stderr, "the call completed with value kind %u\n", value.kind);
            df_value_free(&value);
            df_vm_free(vm);
            return 2;
        }
        char *echoed = json_string_decode(value.bytes.ptr, value.bytes.len);
        df_value_free(&value);
        if (echoed == NULL) {
            fprintf(stderr, "the call result is not a JSON string\n");
            df_vm_free(vm);
            return 2;
        }
        char *text = malloc(strlen(echoed) + 32);
        sprintf(text, "call won with %s", echoed);
        result = json_string_encode(text);
        free(text);
        free(echoed);
    }

    /* 3. Output, end, and everything the VM wrote. */
    check(vm, df_vm_sys_write_output_success(vm, cstr(result)), "df_vm_sys_write_output");
    free(result);
    check(vm, df_vm_sys_end(vm), "df_vm_sys_end");
    DfBuffer out = {0};
    check(vm, df_vm_take_output(vm, &out), "df_vm_take_output");
    int status = print_output(out.ptr, out.len);
    df_buffer_free(&out);
    df_buffer_free(&out); /* a second free of a released buffer is a no-op */
    df_vm_free(vm);
    return status;
}
