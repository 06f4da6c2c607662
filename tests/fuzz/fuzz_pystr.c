/*
 * fuzz_pystr.c — libFuzzer harness for pystr_decode_state(),
 * pystr_to_utf8() and pystr_utf8_encode().  Input layout: byte 0 picks the
 * kind (including invalid ones) and whether to claim one character too many,
 * byte 1 the output capacity, the rest is character data ending where
 * libFuzzer's buffer ends.  The output buffer is heap-allocated at exactly
 * that capacity.  Checks: the result fits, is NUL-terminated, and is
 * well-formed UTF-8 without surrogates; the state decoder only reports
 * kinds 0, 1, 2 or 4.  Seeds: tests/fuzz/corpus/fuzz_pystr
 * (gen_pystr_cases.py --corpus).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "python/pystr.h"

#define HEADER_SIZE 2

static const int kinds[8] = { 1, 2, 4, 1, 2, 4, 0, 3 };

/* Length of the well-formed UTF-8 sequence at s[0..len), 0 if none. */
static size_t utf8_sequence(const uint8_t *s, size_t len)
{
    uint32_t cp;
    size_t n, i;

    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0)
        n = 2, cp = s[0] & 0x1F;
    else if ((s[0] & 0xF0) == 0xE0)
        n = 3, cp = s[0] & 0x0F;
    else if ((s[0] & 0xF8) == 0xF0)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n > len)
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
        return 0;
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return n;
}

static void check_utf8(const char *out, size_t len)
{
    size_t at = 0;

    while (at < len) {
        size_t n = utf8_sequence((const uint8_t *)out + at, len - at);

        if (n == 0)
            __builtin_trap();
        at += n;
    }
}

static void check_state(const uint8_t *data, size_t size)
{
    uint32_t word = 0;
    struct pystr_state state;

    memcpy(&word, data, size < sizeof word ? size : sizeof word);
    state = pystr_decode_state(word);
    if (state.kind != 0 && state.kind != 1 && state.kind != 2 && state.kind != 4)
        __builtin_trap();
}

static void check_encode(const uint8_t *data, size_t size)
{
    uint32_t cp = 0;
    char out[4];
    int n;

    memcpy(&cp, data, size < sizeof cp ? size : sizeof cp);
    n = pystr_utf8_encode(cp, out);
    if (n < 1 || n > 4 || utf8_sequence((const uint8_t *)out, (size_t)n) != (size_t)n)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int kind;
    size_t out_cap, data_len, nchars;
    const uint8_t *chars;
    char *out;
    long written;

    if (size < HEADER_SIZE)
        return 0;
    kind = kinds[data[0] & 7];
    out_cap = data[1];
    chars = data + HEADER_SIZE;
    data_len = size - HEADER_SIZE;
    check_state(chars, data_len);
    check_encode(chars, data_len);
    nchars = data_len / (size_t)(kind > 0 ? kind : 1) + ((data[0] & 8) ? 1 : 0);
    out = malloc(out_cap ? out_cap : 1);
    if (out == NULL)
        return 0;
    written = pystr_to_utf8(kind, chars, data_len, nchars, out, out_cap);
    if (written >= 0) {
        if ((data[0] & 8) || kind == 0 || kind == 3 || out_cap == 0)
            __builtin_trap();
        if ((size_t)written >= out_cap || out[written] != '\0')
            __builtin_trap();
        check_utf8(out, (size_t)written);
    } else if (!((data[0] & 8) || kind == 0 || kind == 3 || out_cap == 0)) {
        __builtin_trap();
    }
    free(out);
    return 0;
}
