/*
 * pystr.h — decoding CPython string objects copied out of a target into UTF-8.
 * Pure functions: the caller copies the object header and its character data
 * out of the target (through a reader) and hands the bytes here.  Untrusted
 * input: every length is bounded; invalid code points are replaced with
 * U+FFFD; never reads past the given buffers, never allocates, never prints.
 */
#ifndef PYROMETER_PYSTR_H
#define PYROMETER_PYSTR_H

#include <stddef.h>
#include <stdint.h>

/* PEP 393 string kinds: bytes per character. */
enum pystr_kind { PYSTR_1BYTE = 1, PYSTR_2BYTE = 2, PYSTR_4BYTE = 4 };

/* Facts decoded from PyASCIIObject.state (bit layout is the same in 3.3–3.13:
 * interned:2, kind:3, compact:1, ascii:1, then ready or statically_allocated). */
struct pystr_state {
    int kind;     /* 1, 2 or 4; 0 if the bits are not a valid kind */
    int compact;  /* data follows the header */
    int ascii;    /* only ASCII: data follows PyASCIIObject */
};
struct pystr_state pystr_decode_state(uint32_t state_word);

/* Convert `nchars` characters of `kind` from `data` (data_len bytes
 * available) into NUL-terminated UTF-8 in `out` (capacity out_cap >= 1).
 * Truncates on a character boundary when `out` is too small.  Returns the
 * number of bytes written (without NUL), or -1 if kind is invalid or data_len
 * < nchars * kind. */
long pystr_to_utf8(int kind, const void *data, size_t data_len, size_t nchars,
                   char *out, size_t out_cap);

/* Encode one code point as UTF-8 into out (>= 4 bytes); surrogates and
 * values above U+10FFFF become U+FFFD.  Returns the byte count (1..4). */
int pystr_utf8_encode(uint32_t cp, char out[4]);

#endif
