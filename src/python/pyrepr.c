/*
 * pyrepr.c — Python-like reprs of a target's objects, bounded in length,
 * items, depth and reads.
 *
 * Output goes through `struct out`, which never writes past its limit and,
 * once cut, drops everything else and ends the text with "..." on a UTF-8
 * character boundary.  Containers are walked at most PY_REPR_MAX_DEPTH deep
 * and PY_REPR_MAX_ITEMS wide, so a repr costs a bounded number of reads
 * whatever the target's memory holds (cycles included).  str escapes follow
 * unicode_repr(); which non-ASCII characters count as printable is
 * approximated by a table of the non-printable ranges (no Unicode database:
 * unassigned code points count as printable).  Never prints.
 */
#include "pyrepr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pydict.h"
#include "pystr.h"

#define STR_READ_MAX 256u     /* code points / bytes of a str / bytes we read */
#define SEQ_SIZE_MAX (1ull << 40)

/* ---- bounded output ----------------------------------------------------- */

struct out {
    char *buf;
    size_t limit;   /* bytes of text allowed before the "..." */
    size_t len;
    int cut;
};

static void out_init(struct out *o, char *buf, size_t cap)
{
    o->buf = buf;
    o->limit = cap > 4 ? cap - 4 : 0;
    o->len = 0;
    o->cut = 0;
    if (cap > 0)
        buf[0] = '\0';
}

static void put(struct out *o, const char *s, size_t n)
{
    if (o->cut)
        return;
    if (o->len + n > o->limit) {
        n = o->limit - o->len;
        o->cut = 1;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* Close the text: drop a split UTF-8 sequence and add "..." when cut. */
static void out_finish(struct out *o)
{
    if (o->cut) {
        size_t end = o->len;
        /* back up over continuation bytes to the last lead byte */
        size_t i = end;
        while (i > 0 && ((unsigned char)o->buf[i - 1] & 0xC0) == 0x80 && end - i < 3)
            i--;
        if (i > 0) {
            unsigned char lead = (unsigned char)o->buf[i - 1];
            size_t need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
            if (end - (i - 1) < need)
                o->len = i - 1;
        }
        memcpy(o->buf + o->len, "...", 3);
        o->len += 3;
    }
    o->buf[o->len] = '\0';
}

/* ---- float -------------------------------------------------------------- */

void py_repr_float(double v, char *out, size_t cap)
{
    if (isnan(v)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "inf" : "-inf");
        return;
    }
    if (v == 0) {
        snprintf(out, cap, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char buf[48];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, sizeof buf, "%.*e", precision - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* buf is [-]d[.ddd]e[+-]XX */
    const char *p = buf;
    int negative = *p == '-';
    if (negative)
        p++;
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < sizeof digits - 1)
            digits[nd++] = *p;
    int exponent = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int decpt = exponent + 1;
    char text[64];
    size_t t = 0;
    if (negative)
        text[t++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            text[t++] = '0';
            text[t++] = '.';
            for (int i = 0; i < -decpt; i++)
                text[t++] = '0';
            memcpy(text + t, digits, nd);
            t += nd;
        } else if ((size_t)decpt >= nd) {
            memcpy(text + t, digits, nd);
            t += nd;
            for (size_t i = nd; i < (size_t)decpt; i++)
                text[t++] = '0';
            text[t++] = '.';
            text[t++] = '0';
        } else {
            memcpy(text + t, digits, (size_t)decpt);
            t += (size_t)decpt;
            text[t++] = '.';
            memcpy(text + t, digits + decpt, nd - (size_t)decpt);
            t += nd - (size_t)decpt;
        }
        text[t] = '\0';
    } else {
        text[t++] = digits[0];
        if (nd > 1) {
            text[t++] = '.';
            memcpy(text + t, digits + 1, nd - 1);
            t += nd - 1;
        }
        int e = decpt - 1;
        snprintf(text + t, sizeof text - t, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    snprintf(out, cap, "%s", text);
}

/* ---- str and bytes ------------------------------------------------------ */

/* Py_UNICODE_ISPRINTABLE, approximately: false for the ranges of
 * categories Cc, Cf, Cs, Co, Zl, Zp, Zs (but space) and noncharacters. */
static int is_printable(uint32_t c)
{
    static const uint32_t ranges[][2] = {
        {0x0000, 0x001F}, {0x007F, 0x00A0}, {0x00AD, 0x00AD}, {0x0600, 0x0605},
        {0x061C, 0x061C}, {0x06DD, 0x06DD}, {0x070F, 0x070F}, {0x08E2, 0x08E2},
        {0x1680, 0x1680}, {0x180E, 0x180E}, {0x2000, 0x200F}, {0x2028, 0x202F},
        {0x205F, 0x2064}, {0x2066, 0x206F}, {0x3000, 0x3000}, {0xD800, 0xF8FF},
        {0xFDD0, 0xFDEF}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0x110BD, 0x110BD},
        {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A},
        {0xE0001, 0xE0001}, {0xE0020, 0xE007F}, {0xF0000, 0x10FFFF},
    };
    if ((c & 0xFFFE) == 0xFFFE || c > 0x10FFFF)
        return 0;
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (c >= ranges[i][0] && c <= ranges[i][1])
            return 0;
    return 1;
}

static void put_escape(struct out *o, uint32_t c)
{
    char esc[12];
    if (c <= 0xFF)
        snprintf(esc, sizeof esc, "\\x%02x", c);
    else if (c <= 0xFFFF)
        snprintf(esc, sizeof esc, "\\u%04x", c);
    else
        snprintf(esc, sizeof esc, "\\U%08x", c);
    puts_(o, esc);
}

static void repr_str(struct out *o, const uint32_t *cps, size_t n, int more)
{
    int single = 0, dbl = 0;
    for (size_t i = 0; i < n; i++) {
        single |= cps[i] == '\'';
        dbl |= cps[i] == '"';
    }
    char quote = single && !dbl ? '"' : '\'';
    put(o, &quote, 1);
    for (size_t i = 0; i < n && !o->cut; i++) {
        uint32_t c = cps[i];
        char ch = (char)c;
        if (c == (uint32_t)quote || c == '\\') {
            put(o, "\\", 1);
            put(o, &ch, 1);
        } else if (c == '\t') {
            puts_(o, "\\t");
        } else if (c == '\n') {
            puts_(o, "\\n");
        } else if (c == '\r') {
            puts_(o, "\\r");
        } else if (c < ' ' || c == 0x7F) {
            put_escape(o, c);
        } else if (c < 0x7F) {
            put(o, &ch, 1);
        } else if (is_printable(c)) {
            char enc[4];
            int k = pystr_utf8_encode(c, enc);
            put(o, enc, (size_t)k);
        } else {
            put_escape(o, c);
        }
    }
    if (more)
        o->cut = 1;
    put(o, &quote, 1);
}

void py_repr_str_codepoints(const uint32_t *cps, size_t n, int more, char *out, size_t cap)
{
    struct out o;
    out_init(&o, out, cap);
    repr_str(&o, cps, n, more);
    out_finish(&o);
}

static void repr_bytes(struct out *o, const uint8_t *data, size_t n, int more)
{
    int single = memchr(data, '\'', n) != NULL, dbl = memchr(data, '"', n) != NULL;
    char quote = single && !dbl ? '"' : '\'';
    put(o, "b", 1);
    put(o, &quote, 1);
    for (size_t i = 0; i < n && !o->cut; i++) {
        uint8_t c = data[i];
        char ch = (char)c;
        if (c == (uint8_t)quote || c == '\\') {
            put(o, "\\", 1);
            put(o, &ch, 1);
        } else if (c == '\t') {
            puts_(o, "\\t");
        } else if (c == '\n') {
            puts_(o, "\\n");
        } else if (c == '\r') {
            puts_(o, "\\r");
        } else if (c < ' ' || c >= 0x7F) {
            put_escape(o, c);
        } else {
            put(o, &ch, 1);
        }
    }
    if (more)
        o->cut = 1;
    put(o, &quote, 1);
}

void py_repr_bytes_data(const uint8_t *data, size_t n, int more, char *out, size_t cap)
{
    struct out o;
    out_init(&o, out, cap);
    repr_bytes(&o, data, n, more);
    out_finish(&o);
}

/* ---- int ---------------------------------------------------------------- */

int py_repr_digits(const uint32_t *digits, size_t n, unsigned shift, int negative, char *out,
                   size_t cap)
{
    uint32_t work[PY_REPR_INT_DIGITS];
    char rev[PY_REPR_INT_DIGITS * 10 + 2];
    size_t nrev = 0;
    if (n > PY_REPR_INT_DIGITS || shift == 0 || shift > 31)
        return -1;
    memcpy(work, digits, n * sizeof *work);
    while (n > 0 && work[n - 1] == 0)
        n--;
    /* divide by 10^9 until nothing is left, collecting 9 decimal digits a time */
    while (n > 0) {
        uint64_t rem = 0;
        for (size_t i = n; i-- > 0;) {
            uint64_t cur = (rem << shift) | work[i];
            work[i] = (uint32_t)(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        while (n > 0 && work[n - 1] == 0)
            n--;
        for (int k = 0; k < 9 && (n > 0 || rem > 0); k++) {
            rev[nrev++] = (char)('0' + rem % 10);
            rem /= 10;
        }
    }
    if (nrev == 0)
        rev[nrev++] = '0';
    size_t len = nrev + (negative && !(nrev == 1 && rev[0] == '0') ? 1 : 0);
    if (len + 1 > cap)
        return -1;
    size_t t = 0;
    if (len > nrev)
        out[t++] = '-';
    while (nrev > 0)
        out[t++] = rev[--nrev];
    out[t] = '\0';
    return (int)t;
}

/* ---- objects ------------------------------------------------------------ */

struct repr_run {
    struct py_objctx *ctx;
    struct out *o;
};

static void repr_object(struct repr_run *r, uint64_t addr, int depth, struct pm_error *err);

static void put_unreadable(struct out *o) { puts_(o, "<unreadable>"); }

static int repr_int(struct repr_run *r, uint64_t addr, enum py_kind kind, struct pm_error *err)
{
    uint32_t digits[PY_REPR_INT_DIGITS];
    size_t n;
    int sign;
    if (py_long_digits(r->ctx, addr, &sign, digits, PY_REPR_INT_DIGITS, &n, err) != 0) {
        if (n > PY_REPR_INT_DIGITS && n < (1u << 30)) {
            char text[64];
            snprintf(text, sizeof text, "<int of ~%llu bits>",
                     (unsigned long long)n * (unsigned long long)r->ctx->layout->long_shift);
            puts_(r->o, text);
            return 0;
        }
        return -1;
    }
    if (kind == PY_KIND_BOOL) {
        puts_(r->o, sign != 0 ? "True" : "False");
        return 0;
    }
    char text[PY_REPR_INT_DIGITS * 10 + 2];
    if (py_repr_digits(digits, n, (unsigned)r->ctx->layout->long_shift, sign < 0, text,
                       sizeof text) < 0)
        return pm_fail(err, PM_EINTERNAL, "int too large");
    puts_(r->o, text);
    return 0;
}

static int repr_str_object(struct repr_run *r, uint64_t addr, struct pm_error *err)
{
    uint32_t cps[STR_READ_MAX];
    size_t n;
    uint64_t total;
    if (py_str_codepoints(r->ctx, addr, cps, STR_READ_MAX, &n, &total, err) != 0)
        return -1;
    repr_str(r->o, cps, n, total > n);
    return 0;
}

static int repr_bytes_object(struct repr_run *r, uint64_t addr, struct pm_error *err)
{
    const struct py_objlayout *l = r->ctx->layout;
    int64_t size;
    if (reader_u64(r->ctx->reader, addr + (uint64_t)l->ob_size, (uint64_t *)&size, err) != 0)
        return -1;
    if (size < 0 || (uint64_t)size > SEQ_SIZE_MAX)
        return pm_fail(err, PM_ETORN, "implausible bytes at 0x%llx", (unsigned long long)addr);
    uint8_t data[STR_READ_MAX];
    size_t n = (uint64_t)size < STR_READ_MAX ? (size_t)size : STR_READ_MAX;
    if (n > 0 && reader_read(r->ctx->reader, addr + (uint64_t)l->bytes_sval, data, n, err) != 0)
        return -1;
    repr_bytes(r->o, data, n, (uint64_t)size > n);
    return 0;
}

static int repr_sequence(struct repr_run *r, uint64_t addr, enum py_kind kind, int depth,
                         struct pm_error *err)
{
    const struct py_objlayout *l = r->ctx->layout;
    int tuple = kind == PY_KIND_TUPLE;
    if (depth >= PY_REPR_MAX_DEPTH) {
        puts_(r->o, tuple ? "(...)" : "[...]");
        return 0;
    }
    int64_t size;
    if (reader_u64(r->ctx->reader, addr + (uint64_t)l->ob_size, (uint64_t *)&size, err) != 0)
        return -1;
    if (size < 0 || (uint64_t)size > SEQ_SIZE_MAX)
        return pm_fail(err, PM_ETORN, "implausible sequence at 0x%llx", (unsigned long long)addr);
    uint64_t items = addr + (uint64_t)l->tuple_items;
    if (!tuple && reader_u64(r->ctx->reader, addr + (uint64_t)l->list_items, &items, err) != 0)
        return -1;
    size_t n = size < PY_REPR_MAX_ITEMS ? (size_t)size : PY_REPR_MAX_ITEMS;
    uint64_t ptrs[PY_REPR_MAX_ITEMS];
    if (n > 0 && reader_read(r->ctx->reader, items, ptrs, n * 8, err) != 0)
        return -1;
    puts_(r->o, tuple ? "(" : "[");
    for (size_t i = 0; i < n && !r->o->cut; i++) {
        if (i > 0)
            puts_(r->o, ", ");
        repr_object(r, ptrs[i], depth + 1, NULL);
    }
    if ((uint64_t)size > n)
        puts_(r->o, ", ...");
    if (tuple && size == 1)
        puts_(r->o, ",");
    puts_(r->o, tuple ? ")" : "]");
    return 0;
}

static int repr_dict(struct repr_run *r, uint64_t addr, int depth, struct pm_error *err)
{
    if (depth >= PY_REPR_MAX_DEPTH) {
        puts_(r->o, "{...}");
        return 0;
    }
    struct py_dict_item items[PY_REPR_MAX_ITEMS];
    size_t n;
    uint64_t used;
    if (py_dict_items(r->ctx, addr, items, PY_REPR_MAX_ITEMS, &n, &used, err) != 0)
        return -1;
    puts_(r->o, "{");
    for (size_t i = 0; i < n && !r->o->cut; i++) {
        if (i > 0)
            puts_(r->o, ", ");
        repr_object(r, items[i].key, depth + 1, NULL);
        puts_(r->o, ": ");
        repr_object(r, items[i].value, depth + 1, NULL);
    }
    if (used > n)
        puts_(r->o, n > 0 ? ", ..." : "...");
    puts_(r->o, "}");
    return 0;
}

static int repr_other(struct repr_run *r, uint64_t addr, uint64_t type, struct pm_error *err)
{
    char name[96], text[160];
    if (py_type_name(r->ctx, type, name, sizeof name, err) != 0)
        return -1;
    snprintf(text, sizeof text, "<%s object at 0x%llx>", name, (unsigned long long)addr);
    puts_(r->o, text);
    return 0;
}

/* Writes the repr of addr, or "<unreadable>" (err says why). */
static void repr_object(struct repr_run *r, uint64_t addr, int depth, struct pm_error *err)
{
    enum py_kind kind;
    uint64_t type;
    if (py_object_kind(r->ctx, addr, &kind, &type, err) != 0) {
        put_unreadable(r->o);
        return;
    }
    /* what a failed part has written stays; a failure before writing shows */
    size_t mark = r->o->len;
    int rc = 0;
    switch (kind) {
    case PY_KIND_NONE: puts_(r->o, "None"); break;
    case PY_KIND_BOOL:
    case PY_KIND_INT: rc = repr_int(r, addr, kind, err); break;
    case PY_KIND_FLOAT: {
        double v;
        char text[48];
        rc = reader_read(r->ctx->reader, addr + (uint64_t)r->ctx->layout->float_value, &v,
                         sizeof v, err);
        if (rc == 0) {
            py_repr_float(v, text, sizeof text);
            puts_(r->o, text);
        }
        break;
    }
    case PY_KIND_STR: rc = repr_str_object(r, addr, err); break;
    case PY_KIND_BYTES: rc = repr_bytes_object(r, addr, err); break;
    case PY_KIND_TUPLE:
    case PY_KIND_LIST: rc = repr_sequence(r, addr, kind, depth, err); break;
    case PY_KIND_DICT: rc = repr_dict(r, addr, depth, err); break;
    default: rc = repr_other(r, addr, type, err); break;
    }
    if (rc != 0 && r->o->len == mark && !r->o->cut)
        put_unreadable(r->o);
}

int py_repr(struct py_objctx *ctx, uint64_t addr, char *out, size_t cap, struct pm_error *err)
{
    struct out o;
    struct pm_error local;
    if (cap < 8)
        return pm_fail(err, PM_EINTERNAL, "repr buffer too small");
    pm_clear(&local);
    out_init(&o, out, cap);
    struct repr_run r = {ctx, &o};
    repr_object(&r, addr, 0, &local);
    out_finish(&o);
    if (local.code != PM_OK) {
        if (err)
            *err = local;
        return -1;
    }
    return 0;
}
