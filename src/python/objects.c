/*
 * objects.c — copying str and bytes objects out of a target.
 * A str is PEP 393: compact ASCII data follows PyASCIIObject, compact
 * non-ASCII data follows PyCompactUnicodeObject, and legacy (non-compact)
 * strings point to their data.  On 2.7 a str is a PyStringObject: ob_size
 * bytes at ob_sval, passed on as UTF-8 (invalid bytes become U+FFFD).
 * Everything read is untrusted: the type is checked when known, lengths are
 * bounded, and the decoder never reads past what was copied.  Never prints.
 */
#include "objects.h"

#include <stdlib.h>
#include <string.h>

#include "pystr.h"

#define HEADER_MAX 128
/* No str holds more bytes than a 64-bit user address space (2^47 on x86-64,
 * 2^48 on arm64): a longer length is a torn read or not a str. */
#define STR_MAX_POSSIBLE_BYTES (1ull << 48)

static int check_type(const struct py_objects *o, const uint8_t *header, uint64_t expected,
                      const char *what, uint64_t addr, struct pm_error *err)
{
    if (expected == 0)
        return 0;
    uint64_t type;
    memcpy(&type, header + o->layout->ob_type, sizeof type);
    if (type != expected)
        return pm_fail(err, PM_ETORN, "object at 0x%llx is not a %s",
                       (unsigned long long)addr, what);
    return 0;
}

/* Length of the valid UTF-8 sequence at s[0..len), 0 if none starts there
 * (overlong forms, surrogates and values above U+10FFFF are invalid). */
static size_t utf8_sequence(const uint8_t *s, size_t len)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Copy data (len bytes) into out as UTF-8, invalid bytes as U+FFFD,
 * stopping on a character boundary; out is NUL-terminated. */
static void bytes_to_utf8(const uint8_t *data, size_t len, char *out, size_t cap)
{
    size_t used = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(data + i, len - i);
        char replacement[4];
        const char *from = (const char *)data + i;
        size_t width = n;
        if (n == 0) {
            width = (size_t)pystr_utf8_encode(0xFFFD, replacement);
            from = replacement;
            n = 1;
        }
        if (width > cap - 1 - used)
            break;
        memcpy(out + used, from, width);
        used += width;
        i += n;
    }
    out[used] = '\0';
}

/* 2.7's str: PyStringObject, ob_size bytes at ob_sval. */
static int read_byte_string(const struct py_objects *o, uint64_t addr, char *out, size_t cap,
                            struct pm_error *err)
{
    const struct py_layout *l = o->layout;
    uint8_t header[HEADER_MAX];
    size_t header_len = (size_t)l->string_sval;
    if (header_len > HEADER_MAX || l->ob_size == PY_OFF_NONE ||
        (size_t)l->ob_size + 8 > header_len)
        return pm_fail(err, PM_EINTERNAL, "unexpected str header size");
    if (reader_read(o->reader, addr, header, header_len, err) != 0)
        return -1;
    if (check_type(o, header, o->string_type, "str", addr, err) != 0)
        return -1;
    int64_t size;
    memcpy(&size, header + l->ob_size, sizeof size);
    if (size < 0 || (uint64_t)size > STR_MAX_POSSIBLE_BYTES)
        return pm_fail(err, PM_ETORN, "implausible str at 0x%llx", (unsigned long long)addr);
    /* every byte gives at least one byte of output: cap - 1 bytes fill it,
     * and 3 more complete a character cut at the end */
    size_t nbytes = (size_t)size;
    if (nbytes > PY_STR_MAX_CHARS)
        nbytes = PY_STR_MAX_CHARS;
    if (nbytes > cap + 3)
        nbytes = cap + 3;
    uint8_t stack_buf[1024];
    uint8_t *data = nbytes <= sizeof stack_buf ? stack_buf : malloc(nbytes);
    if (data == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    int rc = nbytes ? reader_read(o->reader, addr + (uint64_t)l->string_sval, data, nbytes, err)
                    : 0;
    if (rc == 0)
        bytes_to_utf8(data, nbytes, out, cap);
    if (data != stack_buf)
        free(data);
    return rc;
}

int py_read_str(const struct py_objects *o, uint64_t addr, char *out, size_t cap,
                struct pm_error *err)
{
    const struct py_layout *l = o->layout;
    if (cap == 0)
        return pm_fail(err, PM_EINTERNAL, "no room for a string");
    if (l->string_sval != PY_OFF_NONE)
        return read_byte_string(o, addr, out, cap, err);
    uint8_t header[HEADER_MAX];
    size_t header_len = (size_t)l->unicode_compact_size;
    if (header_len > HEADER_MAX || header_len < (size_t)l->unicode_ascii_size)
        return pm_fail(err, PM_EINTERNAL, "unexpected str header size");
    if (reader_read(o->reader, addr, header, header_len, err) != 0)
        return -1;
    if (check_type(o, header, o->unicode_type, "str", addr, err) != 0)
        return -1;
    int64_t length;
    uint32_t state_word;
    memcpy(&length, header + l->unicode_length, sizeof length);
    memcpy(&state_word, header + l->unicode_state, sizeof state_word);
    struct pystr_state st = pystr_decode_state(state_word);
    if (length < 0 || st.kind == 0 || (st.ascii && st.kind != 1) ||
        (uint64_t)length > STR_MAX_POSSIBLE_BYTES / (uint64_t)st.kind)
        return pm_fail(err, PM_ETORN, "implausible str at 0x%llx", (unsigned long long)addr);
    size_t nchars = (size_t)length > PY_STR_MAX_CHARS ? PY_STR_MAX_CHARS : (size_t)length;
    uint64_t data_addr;
    if (st.compact) {
        data_addr = addr + (uint64_t)(st.ascii ? l->unicode_ascii_size : l->unicode_compact_size);
    } else if (l->unicode_legacy_data != PY_OFF_NONE) {
        if (reader_u64(o->reader, addr + (uint64_t)l->unicode_legacy_data, &data_addr, err) != 0)
            return -1;
    } else {
        return pm_fail(err, PM_ETORN, "non-compact str at 0x%llx", (unsigned long long)addr);
    }
    size_t nbytes = nchars * (size_t)st.kind;
    uint8_t stack_buf[1024];
    uint8_t *data = nbytes <= sizeof stack_buf ? stack_buf : malloc(nbytes ? nbytes : 1);
    if (data == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    int rc = nbytes ? reader_read(o->reader, data_addr, data, nbytes, err) : 0;
    if (rc == 0 && pystr_to_utf8(st.kind, data, nbytes, nchars, out, cap) < 0)
        rc = pm_fail(err, PM_ETORN, "undecodable str at 0x%llx", (unsigned long long)addr);
    if (data != stack_buf)
        free(data);
    return rc;
}

int py_read_bytes(const struct py_objects *o, uint64_t addr, size_t max_len, uint8_t **out,
                  size_t *len, struct pm_error *err)
{
    const struct py_layout *l = o->layout;
    uint8_t header[HEADER_MAX];
    size_t header_len = (size_t)l->bytes_sval;
    if (header_len > HEADER_MAX)
        return pm_fail(err, PM_EINTERNAL, "unexpected bytes header size");
    if (reader_read(o->reader, addr, header, header_len, err) != 0)
        return -1;
    if (check_type(o, header, o->bytes_type, "bytes", addr, err) != 0)
        return -1;
    int64_t size;
    memcpy(&size, header + l->ob_size, sizeof size);
    if (size < 0 || (uint64_t)size > max_len)
        return pm_fail(err, PM_ETORN, "implausible bytes length %lld at 0x%llx", (long long)size,
                       (unsigned long long)addr);
    uint8_t *buf = malloc((size_t)size + 1);
    if (buf == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    if (size > 0 && reader_read(o->reader, addr + (uint64_t)l->bytes_sval, buf, (size_t)size, err) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = (size_t)size;
    return 0;
}
