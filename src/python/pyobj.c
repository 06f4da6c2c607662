/*
 * pyobj.c — an object's kind, and the payloads of int and str, read out of
 * a target.
 *
 * Invariants: an object's type is recognised only on a static type object
 * (heap types are user classes: always PY_KIND_OTHER) whose tp_name names
 * a builtin and, for types that have one, whose fast-subclass flag is set;
 * recognised static types are cached by address (they never move or die).
 * Every length read from the target is checked against a fixed bound
 * before it sizes a read.  Never prints.
 */
#include "pyobj.h"

#include <string.h>

#include "process.h"
#include "pystr.h"

#define TYPE_NAME_MAX 64
/* a str longer than this is not a str (64-bit user address space) */
#define STR_MAX_POSSIBLE (1ull << 48)
#define STR_COPY_MAX 4096u   /* code points py_str_codepoints copies at most */
#define LONG_DIGITS_MAX (1ull << 40)

int py_objctx_init(struct py_objctx *ctx, struct reader *reader, int major, int minor,
                   struct pm_error *err)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->reader = reader;
    ctx->layout = py_objlayout_for(major, minor);
    if (ctx->layout == NULL)
        return pm_fail(err, PM_EUNSUPPORTED, "no object layout for Python %d.%d", major, minor);
    return 0;
}

int py_objctx_init_process(struct py_objctx *ctx, struct py_process *py, struct pm_error *err)
{
    const struct py_version *v = py_get_version(py);
    return py_objctx_init(ctx, py_reader(py), v->major, v->minor, err);
}

static uint64_t get_u64(const uint8_t *block, int64_t off)
{
    uint64_t v;
    memcpy(&v, block + off, sizeof v);
    return v;
}

/* Which builtin a static type is, from its name and flags. */
static enum py_kind classify(const struct py_objlayout *l, const char *name, uint64_t flags)
{
    static const struct {
        const char *name;
        enum py_kind kind;
    } names[] = {
        {"NoneType", PY_KIND_NONE}, {"bool", PY_KIND_BOOL},   {"int", PY_KIND_INT},
        {"float", PY_KIND_FLOAT},   {"str", PY_KIND_STR},     {"bytes", PY_KIND_BYTES},
        {"tuple", PY_KIND_TUPLE},   {"list", PY_KIND_LIST},   {"dict", PY_KIND_DICT},
        {"module", PY_KIND_MODULE}, {"cell", PY_KIND_CELL},
    };
    enum py_kind kind = PY_KIND_OTHER;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0)
            kind = names[i].kind;
    int64_t need = 0;
    switch (kind) {
    case PY_KIND_BOOL:
    case PY_KIND_INT: need = l->flag_long_subclass; break;
    case PY_KIND_STR: need = l->flag_unicode_subclass; break;
    case PY_KIND_BYTES: need = l->flag_bytes_subclass; break;
    case PY_KIND_TUPLE: need = l->flag_tuple_subclass; break;
    case PY_KIND_LIST: need = l->flag_list_subclass; break;
    case PY_KIND_DICT: need = l->flag_dict_subclass; break;
    default: break;
    }
    if (need > 0 && (flags & (uint64_t)need) == 0)
        return PY_KIND_OTHER;
    return kind;
}

int py_type_name(struct py_objctx *ctx, uint64_t type, char *out, size_t cap,
                 struct pm_error *err)
{
    uint64_t name_ptr;
    if (reader_u64(ctx->reader, type + (uint64_t)ctx->layout->type_name, &name_ptr, err) != 0)
        return -1;
    return reader_cstr(ctx->reader, name_ptr, out, cap, err);
}

static size_t type_slot(uint64_t type)
{
    return (size_t)((type * 0x9E3779B97F4A7C15ull) >> 58) & (PY_OBJCTX_TYPE_CACHE - 1);
}

int py_object_kind(struct py_objctx *ctx, uint64_t addr, enum py_kind *kind, uint64_t *type,
                   struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    *kind = PY_KIND_OTHER;
    *type = 0;
    if (addr == 0)
        return pm_fail(err, PM_EREAD, "NULL object");
    if (reader_u64(ctx->reader, addr + (uint64_t)l->ob_type, type, err) != 0)
        return -1;
    size_t s = type_slot(*type);
    if (*type != 0 && ctx->types[s].type == *type) {
        *kind = ctx->types[s].kind;
        return 0;
    }
    uint64_t flags;
    if (reader_u64(ctx->reader, *type + (uint64_t)l->type_flags, &flags, err) != 0)
        return -1;
    if (flags & (uint64_t)l->flag_heaptype)
        return 0;
    char name[TYPE_NAME_MAX];
    if (py_type_name(ctx, *type, name, sizeof name, err) != 0)
        return -1;
    *kind = classify(l, name, flags);
    ctx->types[s].type = *type;
    ctx->types[s].kind = *kind;
    return 0;
}

/* The header facts of a str: length, kind and where its data is. */
struct str_header {
    uint64_t length;
    int kind;
    uint64_t data;
};

static int read_str_header(struct py_objctx *ctx, uint64_t addr, const uint8_t *header,
                           struct str_header *h, struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    int64_t length;
    uint32_t state_word;
    memcpy(&length, header + l->unicode_length, sizeof length);
    memcpy(&state_word, header + l->unicode_state, sizeof state_word);
    struct pystr_state st = pystr_decode_state(state_word);
    if (length < 0 || st.kind == 0 || (uint64_t)length > STR_MAX_POSSIBLE / (uint64_t)st.kind)
        return pm_fail(err, PM_ETORN, "implausible str at 0x%llx", (unsigned long long)addr);
    h->length = (uint64_t)length;
    h->kind = st.kind;
    if (st.compact) {
        h->data = addr + (uint64_t)(st.ascii ? l->unicode_ascii_size : l->unicode_compact_size);
        return 0;
    }
    return reader_u64(ctx->reader, addr + (uint64_t)l->unicode_legacy_data, &h->data, err);
}

int py_str_codepoints(struct py_objctx *ctx, uint64_t addr, uint32_t *cps, size_t cap,
                      size_t *copied, uint64_t *total, struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    uint8_t header[128];
    size_t header_len = (size_t)l->unicode_compact_size;
    *copied = 0;
    *total = 0;
    if (header_len > sizeof header)
        return pm_fail(err, PM_EINTERNAL, "unexpected str header size");
    struct str_header h;
    if (reader_read(ctx->reader, addr, header, header_len, err) != 0 ||
        read_str_header(ctx, addr, header, &h, err) != 0)
        return -1;
    *total = h.length;
    size_t n = h.length < cap ? (size_t)h.length : cap;
    if (n > STR_COPY_MAX)
        n = STR_COPY_MAX;
    uint8_t data[STR_COPY_MAX * 4];
    if (n > 0 && reader_read(ctx->reader, h.data, data, n * (size_t)h.kind, err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (h.kind == 1) {
            cps[i] = data[i];
        } else if (h.kind == 2) {
            uint16_t c;
            memcpy(&c, data + 2 * i, 2);
            cps[i] = c;
        } else {
            memcpy(&cps[i], data + 4 * i, 4);
        }
    }
    *copied = n;
    return 0;
}

int py_str_utf8(struct py_objctx *ctx, uint64_t addr, char *out, size_t cap,
                struct pm_error *err)
{
    enum py_kind kind;
    uint64_t type;
    if (cap == 0)
        return pm_fail(err, PM_EINTERNAL, "empty buffer");
    out[0] = '\0';
    if (py_object_kind(ctx, addr, &kind, &type, err) != 0)
        return -1;
    if (kind != PY_KIND_STR)
        return pm_fail(err, PM_ETORN, "object at 0x%llx is not a str", (unsigned long long)addr);
    uint32_t cps[1024];
    size_t n;
    uint64_t total;
    /* a code point takes at least one UTF-8 byte */
    if (py_str_codepoints(ctx, addr, cps, cap < 1024 ? cap : 1024, &n, &total,
                          err) != 0)
        return -1;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char enc[4];
        int k = pystr_utf8_encode(cps[i], enc);
        if (len + (size_t)k + 1 > cap)
            break;
        memcpy(out + len, enc, (size_t)k);
        len += (size_t)k;
    }
    out[len] = '\0';
    return 0;
}

int py_str_equals(struct py_objctx *ctx, uint64_t addr, const char *s, int *equal,
                  struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    *equal = 0;
    size_t slen = strlen(s);
    enum py_kind kind;
    uint64_t type;
    if (py_object_kind(ctx, addr, &kind, &type, err) != 0)
        return -1;
    if (kind != PY_KIND_STR)
        return 0;
    /* compact ASCII (all identifiers we look for): header and data in one read */
    uint8_t buf[256];
    size_t want = (size_t)l->unicode_ascii_size + slen;
    if (want > sizeof buf || (size_t)l->unicode_compact_size > sizeof buf)
        return pm_fail(err, PM_EINTERNAL, "name too long to compare");
    if (want < (size_t)l->unicode_compact_size)
        want = (size_t)l->unicode_compact_size;
    if (reader_read(ctx->reader, addr, buf, want, err) != 0)
        return -1;
    struct str_header h;
    if (read_str_header(ctx, addr, buf, &h, err) != 0)
        return -1;
    if (h.length != slen || h.kind != 1)
        return 0;
    if (h.data == addr + (uint64_t)l->unicode_ascii_size) {
        *equal = memcmp(buf + l->unicode_ascii_size, s, slen) == 0;
        return 0;
    }
    /* a compact Latin-1 or legacy str of the same length */
    uint8_t data[256];
    if (slen > 0 && reader_read(ctx->reader, h.data, data, slen, err) != 0)
        return -1;
    *equal = memcmp(data, s, slen) == 0;
    return 0;
}

int py_long_digits(struct py_objctx *ctx, uint64_t addr, int *sign, uint32_t *digits,
                   size_t cap, size_t *ndigits, struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    uint8_t header[32];
    *sign = 0;
    *ndigits = 0;
    if ((size_t)l->long_digits > sizeof header || l->long_digit_size != 4)
        return pm_fail(err, PM_EINTERNAL, "unexpected int layout");
    if (reader_read(ctx->reader, addr, header, (size_t)l->long_digits, err) != 0)
        return -1;
    uint64_t n;
    if (l->long_tag != PY_OFF_NONE) {
        /* 3.12+: lv_tag = ndigits << 3 | sign bits (0 positive, 1 zero, 2 negative) */
        uint64_t tag = get_u64(header, l->long_tag);
        n = tag >> 3;
        unsigned s = tag & 3;
        if (s == 3)
            return pm_fail(err, PM_ETORN, "implausible int at 0x%llx", (unsigned long long)addr);
        *sign = s == 0 ? 1 : s == 1 ? 0 : -1;
        if ((*sign == 0) != (n == 0))
            return pm_fail(err, PM_ETORN, "implausible int at 0x%llx", (unsigned long long)addr);
    } else {
        int64_t size = (int64_t)get_u64(header, l->ob_size);
        *sign = size > 0 ? 1 : size < 0 ? -1 : 0;
        n = size < 0 ? (uint64_t)0 - (uint64_t)size : (uint64_t)size;
    }
    if (n > LONG_DIGITS_MAX)
        return pm_fail(err, PM_ETORN, "implausible int at 0x%llx", (unsigned long long)addr);
    *ndigits = (size_t)n;
    if (n > cap)
        return pm_fail(err, PM_ETORN, "int at 0x%llx has %llu digits",
                       (unsigned long long)addr, (unsigned long long)n);
    if (n > 0 &&
        reader_read(ctx->reader, addr + (uint64_t)l->long_digits, digits, n * 4, err) != 0)
        return -1;
    uint32_t limit = (uint32_t)1 << l->long_shift;
    for (size_t i = 0; i < n; i++)
        if (digits[i] >= limit)
            return pm_fail(err, PM_ETORN, "implausible int at 0x%llx", (unsigned long long)addr);
    return 0;
}

int py_long_u64(struct py_objctx *ctx, uint64_t addr, uint64_t *value, struct pm_error *err)
{
    enum py_kind kind;
    uint64_t type;
    *value = 0;
    if (py_object_kind(ctx, addr, &kind, &type, err) != 0)
        return -1;
    if (kind != PY_KIND_INT && kind != PY_KIND_BOOL)
        return pm_fail(err, PM_ETORN, "object at 0x%llx is not an int", (unsigned long long)addr);
    uint32_t digits[4];
    size_t n;
    int sign;
    if (py_long_digits(ctx, addr, &sign, digits, 4, &n, err) != 0)
        return -1;
    unsigned shift = (unsigned)ctx->layout->long_shift;
    unsigned __int128 v = 0;
    for (size_t i = n; i-- > 0;) {
        v = (v << shift) | digits[i];
        if (v >> 64)
            return pm_fail(err, PM_ETORN, "int at 0x%llx is wider than 64 bits",
                           (unsigned long long)addr);
    }
    *value = sign < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return 0;
}
