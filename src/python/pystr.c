/*
 * pystr.c — owns turning PEP 393 string data copied out of a target into
 * UTF-8: decoding PyASCIIObject.state, and UCS1/UCS2/UCS4 → UTF-8.
 *
 * Must never read memory of a target, allocate, print, or trust its input:
 * lengths are checked before any character is read, characters are read with
 * memcpy (the copy may be unaligned), output stops on a character boundary
 * and is always NUL-terminated.  Code points UTF-8 cannot carry (surrogates,
 * anything above U+10FFFF) become U+FFFD.  A UCS2 string holding a high and a
 * low surrogate side by side is two lone surrogates to CPython (it never
 * combines them), so each becomes its own U+FFFD here too.
 */
#include "pystr.h"

#include <limits.h>
#include <string.h>

/* PyASCIIObject.state, low bits first: interned:2, kind:3, compact:1,
 * ascii:1 (then ready / statically_allocated, which we do not need). */
#define STATE_KIND_SHIFT    2
#define STATE_KIND_MASK     7u
#define STATE_COMPACT_SHIFT 5
#define STATE_ASCII_SHIFT   6

#define REPLACEMENT_CHAR 0xFFFDu
#define MAX_CODE_POINT   0x10FFFFu

static int kind_is_valid(int kind)
{
    return kind == PYSTR_1BYTE || kind == PYSTR_2BYTE || kind == PYSTR_4BYTE;
}

/* An ASCII string is always 1-byte (CPython checks this invariant), so a
 * state claiming otherwise is garbage: report kind 0. */
struct pystr_state pystr_decode_state(uint32_t state_word)
{
    struct pystr_state state;
    int kind = (int)((state_word >> STATE_KIND_SHIFT) & STATE_KIND_MASK);

    state.compact = (int)((state_word >> STATE_COMPACT_SHIFT) & 1u);
    state.ascii = (int)((state_word >> STATE_ASCII_SHIFT) & 1u);
    state.kind = kind_is_valid(kind) ? kind : 0;
    if (state.ascii && state.kind != PYSTR_1BYTE)
        state.kind = 0;
    return state;
}

int pystr_utf8_encode(uint32_t cp, char out[4])
{
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > MAX_CODE_POINT)
        cp = REPLACEMENT_CHAR;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Character `index` of `data` (kind already valid and index in bounds);
 * host byte order, which is the target's: both run on this machine. */
static uint32_t read_char(int kind, const uint8_t *data, size_t index)
{
    uint16_t u16;
    uint32_t u32;

    switch (kind) {
    case PYSTR_1BYTE:
        return data[index];
    case PYSTR_2BYTE:
        memcpy(&u16, data + index * 2, sizeof u16);
        return u16;
    default:
        memcpy(&u32, data + index * 4, sizeof u32);
        return u32;
    }
}

long pystr_to_utf8(int kind, const void *data, size_t data_len, size_t nchars,
                   char *out, size_t out_cap)
{
    size_t room, used = 0, index;

    if (!kind_is_valid(kind) || out == NULL || out_cap == 0)
        return -1;
    if (nchars > data_len / (size_t)kind || (nchars > 0 && data == NULL))
        return -1;
    room = out_cap - 1;
    if (room > (size_t)LONG_MAX)
        room = (size_t)LONG_MAX;
    for (index = 0; index < nchars; index++) {
        char encoded[4];
        int n = pystr_utf8_encode(read_char(kind, data, index), encoded);

        if ((size_t)n > room - used)
            break;
        memcpy(out + used, encoded, (size_t)n);
        used += (size_t)n;
    }
    out[used] = '\0';
    return (long)used;
}
