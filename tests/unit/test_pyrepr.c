/*
 * test_pyrepr.c — the object model for `dump --locals` and thread names
 * (python/pyobj.h, pydict.h, pyrepr.h, locals.h, threadnames.h).
 *
 * The pure parts first: float reprs (shortest round trip, Python's exponent
 * rules), str and bytes quoting and escapes, big-int decimal text, cuts on a
 * UTF-8 boundary.  Then, for each of the 3.8, 3.10, 3.11, 3.12 and 3.13
 * object layouts (the generated tables), a synthetic memory image laid out
 * by that table: static type objects, None, bools, ints of one and several
 * digits (ob_size / lv_tag), floats, compact ASCII and UCS2 strs, bytes,
 * tuples, lists, dicts (3.8–3.10 and 3.11+ key tables, combined and split),
 * a user class whose instances keep attributes in a __dict__ (≤3.10), a
 * managed dict (3.11), tagged values (3.12) or inline values (3.13), code
 * objects and frames with arguments, locals and cells, and an interpreter
 * whose sys.modules holds a `threading` module with `_active` threads.
 * Then the image is broken: pointers out of it, a list containing itself,
 * absurd sizes.  The image is an exact-size heap block so ASan sees any read
 * past it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "python/locals.h"
#include "python/objlayout.h"
#include "python/pydict.h"
#include "python/pyobj.h"
#include "python/pyrepr.h"
#include "python/threadnames.h"
#include "target/reader.h"

#define IMG_BASE 0x200000ull
#define IMG_SIZE (1u << 20)
#define BAD_PTR 0x7777000ull     /* outside the image */

#define STATE_KIND(k) ((uint32_t)(k) << 2)
#define STATE_COMPACT (1u << 5)
#define STATE_ASCII (1u << 6)

/* ---- pure functions ----------------------------------------------------- */

static void check_float(double v, const char *want)
{
    char out[48];
    py_repr_float(v, out, sizeof out);
    if (strcmp(out, want) != 0)
        fail_msg("repr(%.17g) = %s, want %s", v, out, want);
}

static void test_float(void **state)
{
    (void)state;
    check_float(0.1, "0.1");
    check_float(1.0 / 3, "0.3333333333333333");
    check_float(3.0, "3.0");
    check_float(-0.0, "-0.0");
    check_float(0.0, "0.0");
    check_float(1e16, "1e+16");
    check_float(1e15, "1000000000000000.0");
    check_float(1234567890123456.0, "1234567890123456.0");
    check_float(1e22, "1e+22");
    check_float(0.0001, "0.0001");
    check_float(0.00001, "1e-05");
    check_float(1.5e-5, "1.5e-05");
    check_float(-2.5e-300, "-2.5e-300");
    check_float(123456789012345678.0, "1.2345678901234568e+17");
    check_float(5e-324, "5e-324");
    check_float(1.7976931348623157e308, "1.7976931348623157e+308");
    check_float(1.0 / 0.0, "inf");
    check_float(-1.0 / 0.0, "-inf");
    check_float(0.0 / 0.0, "nan");
}

static void check_str(const uint32_t *cps, size_t n, int more, size_t cap, const char *want)
{
    char out[256];
    py_repr_str_codepoints(cps, n, more, out, cap);
    if (strcmp(out, want) != 0)
        fail_msg("str repr %s, want %s", out, want);
}

static void test_str_escapes(void **state)
{
    (void)state;
    const uint32_t plain[] = {'a', 'b', 'c'};
    check_str(plain, 3, 0, 256, "'abc'");
    check_str(plain, 0, 0, 256, "''");
    const uint32_t apostrophe[] = {'i', 't', '\'', 's'};
    check_str(apostrophe, 4, 0, 256, "\"it's\"");
    const uint32_t both[] = {'\'', '"'};
    check_str(both, 2, 0, 256, "'\\'\"'");
    const uint32_t controls[] = {'\t', '\n', '\r', 0, 0x7f, '\\', 0x85, 0xa0, 0xe9, 0x2028,
                                 0x3bb, 0xd800, 0x1f600, 0xe000, 0xfffe};
    check_str(controls, sizeof controls / 4, 0, 256,
              "'\\t\\n\\r\\x00\\x7f\\\\\\x85\\xa0\xc3\xa9\\u2028\xce\xbb\\ud800"
              "\xf0\x9f\x98\x80\\ue000\\ufffe'");
    /* cut: the text ends with "..." and never splits a character */
    const uint32_t lambdas[] = {0x3bb, 0x3bb, 0x3bb, 0x3bb, 0x3bb, 0x3bb};
    check_str(lambdas, 6, 0, 12, "'\xce\xbb\xce\xbb\xce\xbb...");
    check_str(lambdas, 6, 0, 10, "'\xce\xbb\xce\xbb...");
    check_str(plain, 3, 1, 256, "'abc...");
}

static void test_bytes_escapes(void **state)
{
    (void)state;
    char out[64];
    const uint8_t data[] = {0, 'a', 'b', '\'', '"', '\\', 0xff, '\n'};
    py_repr_bytes_data(data, sizeof data, 0, out, sizeof out);
    assert_string_equal(out, "b'\\x00ab\\'\"\\\\\\xff\\n'");
    py_repr_bytes_data((const uint8_t *)"it's", 4, 0, out, sizeof out);
    assert_string_equal(out, "b\"it's\"");
    py_repr_bytes_data(data, 0, 0, out, sizeof out);
    assert_string_equal(out, "b''");
}

static void test_digits(void **state)
{
    (void)state;
    char out[700];
    /* 12345678901234567890 = 10 * 2^60 + 727585470 * 2^30 + 1269350098... computed: */
    uint64_t v = 12345678901234567890ull;
    uint32_t d[3] = {(uint32_t)(v & 0x3fffffff), (uint32_t)((v >> 30) & 0x3fffffff),
                     (uint32_t)(v >> 60)};
    assert_int_equal(py_repr_digits(d, 3, 30, 1, out, sizeof out), 21);
    assert_string_equal(out, "-12345678901234567890");
    assert_int_equal(py_repr_digits(d, 0, 30, 0, out, sizeof out), 1);
    assert_string_equal(out, "0");
    /* 2**100: digit 3 holds 2**10 */
    uint32_t p[4] = {0, 0, 0, 1u << 10};
    py_repr_digits(p, 4, 30, 0, out, sizeof out);
    assert_string_equal(out, "1267650600228229401496703205376");
    /* 10**18 exactly: a remainder group of all zeros inside the number */
    uint64_t e18 = 1000000000000000000ull;
    uint32_t q[2] = {(uint32_t)(e18 & 0x3fffffff), (uint32_t)(e18 >> 30)};
    q[1] &= 0x3fffffff;
    uint32_t q2[3] = {q[0], q[1], (uint32_t)(e18 >> 60)};
    py_repr_digits(q2, 3, 30, 0, out, sizeof out);
    assert_string_equal(out, "1000000000000000000");
    assert_int_equal(py_repr_digits(d, 3, 30, 1, out, 5), -1);
}

/* ---- the image ---------------------------------------------------------- */

struct image {
    uint8_t *mem;
    size_t used;
    const struct py_objlayout *l;
    uint64_t t_none, t_bool, t_int, t_float, t_str, t_bytes, t_tuple, t_list, t_dict, t_module,
        t_cell, t_object, t_code, t_user;
    uint64_t none, true_, false_;
};

static uint64_t img_alloc(struct image *im, size_t size)
{
    size_t at = (im->used + 15) & ~(size_t)15;
    if (at + size > IMG_SIZE)
        fail_msg("image full");
    im->used = at + size;
    memset(im->mem + at, 0, size);
    return IMG_BASE + at;
}

static uint8_t *at(struct image *im, uint64_t addr, size_t len)
{
    if (addr < IMG_BASE || addr - IMG_BASE + len > IMG_SIZE)
        fail_msg("write outside the image at 0x%llx", (unsigned long long)addr);
    return im->mem + (addr - IMG_BASE);
}

static void put64(struct image *im, uint64_t addr, int64_t off, uint64_t v)
{
    if (off == PY_OFF_NONE)
        fail_msg("writing a field this layout does not have");
    memcpy(at(im, addr + (uint64_t)off, 8), &v, 8);
}

static void put32(struct image *im, uint64_t addr, int64_t off, uint32_t v)
{
    if (off == PY_OFF_NONE)
        fail_msg("writing a field this layout does not have");
    memcpy(at(im, addr + (uint64_t)off, 4), &v, 4);
}

static void put8(struct image *im, uint64_t addr, int64_t off, uint8_t v)
{
    if (off == PY_OFF_NONE)
        fail_msg("writing a field this layout does not have");
    *at(im, addr + (uint64_t)off, 1) = v;
}

static uint64_t make_cstr(struct image *im, const char *s)
{
    uint64_t a = img_alloc(im, strlen(s) + 1);
    memcpy(at(im, a, strlen(s) + 1), s, strlen(s) + 1);
    return a;
}

static uint64_t make_type(struct image *im, const char *name, uint64_t flags)
{
    uint64_t t = img_alloc(im, 1024);
    put64(im, t, 0, 1);
    put64(im, t, im->l->type_name, make_cstr(im, name));
    put64(im, t, im->l->type_flags, flags);
    return t;
}

static uint64_t obj(struct image *im, uint64_t type, size_t size)
{
    uint64_t a = img_alloc(im, size);
    put64(im, a, 0, 1);
    put64(im, a, im->l->ob_type, type);
    return a;
}

static uint64_t make_ascii(struct image *im, const char *s)
{
    const struct py_objlayout *l = im->l;
    size_t n = strlen(s);
    size_t size = (size_t)l->unicode_ascii_size + n + 1;
    if (size < (size_t)l->unicode_compact_size)
        size = (size_t)l->unicode_compact_size;
    uint64_t a = obj(im, im->t_str, size);
    put64(im, a, l->unicode_length, n);
    put32(im, a, l->unicode_state, STATE_KIND(1) | STATE_COMPACT | STATE_ASCII);
    memcpy(at(im, a + (uint64_t)l->unicode_ascii_size, n), s, n);
    return a;
}

static uint64_t make_ucs2(struct image *im, const uint16_t *chars, size_t n)
{
    const struct py_objlayout *l = im->l;
    uint64_t a = obj(im, im->t_str, (size_t)l->unicode_compact_size + 2 * (n + 1));
    put64(im, a, l->unicode_length, n);
    put32(im, a, l->unicode_state, STATE_KIND(2) | STATE_COMPACT);
    memcpy(at(im, a + (uint64_t)l->unicode_compact_size, 2 * n), chars, 2 * n);
    return a;
}

static uint64_t make_long_type(struct image *im, uint64_t type, int sign, const uint32_t *digits,
                               size_t n)
{
    const struct py_objlayout *l = im->l;
    uint64_t a = obj(im, type, (size_t)l->long_digits + 4 * (n ? n : 1));
    if (l->long_tag != PY_OFF_NONE)
        put64(im, a, l->long_tag, ((uint64_t)n << 3) | (sign < 0 ? 2u : sign == 0 ? 1u : 0u));
    else
        put64(im, a, l->ob_size, (uint64_t)(sign < 0 ? -(int64_t)n : (int64_t)n));
    if (n > 0)
        memcpy(at(im, a + (uint64_t)l->long_digits, 4 * n), digits, 4 * n);
    return a;
}

static uint64_t make_int(struct image *im, int64_t v)
{
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint32_t digits[3];
    size_t n = 0;
    while (mag) {
        digits[n++] = (uint32_t)(mag & 0x3fffffff);
        mag >>= 30;
    }
    return make_long_type(im, im->t_int, v < 0 ? -1 : v > 0, digits, n);
}

static uint64_t make_float(struct image *im, double v)
{
    uint64_t a = obj(im, im->t_float, 24);
    memcpy(at(im, a + (uint64_t)im->l->float_value, 8), &v, 8);
    return a;
}

static uint64_t make_bytes(struct image *im, const void *data, size_t n)
{
    uint64_t a = obj(im, im->t_bytes, (size_t)im->l->bytes_sval + n + 1);
    put64(im, a, im->l->ob_size, n);
    memcpy(at(im, a + (uint64_t)im->l->bytes_sval, n), data, n);
    return a;
}

static uint64_t make_tuple(struct image *im, const uint64_t *items, size_t n)
{
    uint64_t a = obj(im, im->t_tuple, (size_t)im->l->tuple_items + 8 * (n ? n : 1));
    put64(im, a, im->l->ob_size, n);
    if (n > 0)
        memcpy(at(im, a + (uint64_t)im->l->tuple_items, 8 * n), items, 8 * n);
    return a;
}

static uint64_t make_list(struct image *im, const uint64_t *items, size_t n)
{
    uint64_t a = obj(im, im->t_list, 48);
    uint64_t array = img_alloc(im, 8 * (n ? n : 1));
    put64(im, a, im->l->ob_size, n);
    put64(im, a, im->l->list_items, array);
    if (n > 0)
        memcpy(at(im, array, 8 * n), items, 8 * n);
    return a;
}

/* A key table of n entries (n <= 5, 8 slots): unicode keys on 3.11+ when
 * `unicode` (split when `split`), else general entries. */
static uint64_t make_keys(struct image *im, const uint64_t *keys, const uint64_t *values, size_t n,
                          int unicode, int split)
{
    const struct py_objlayout *l = im->l;
    uint64_t k;
    size_t entry;
    uint64_t entries;
    if (l->keys_size != PY_OFF_NONE) {
        entry = (size_t)l->entry_size;
        k = img_alloc(im, (size_t)l->keys_indices + 8 + 8 * entry);
        put64(im, k, l->keys_size, 8);
        entries = k + (uint64_t)l->keys_indices + 8;
    } else {
        entry = (size_t)(unicode ? l->unicode_entry_size : l->entry_size);
        k = img_alloc(im, (size_t)l->keys_indices + 8 + 8 * entry);
        put8(im, k, l->keys_log2_size, 3);
        put8(im, k, l->keys_log2_index_bytes, 3);
        put8(im, k, l->keys_kind, split ? 2 : unicode ? 1 : 0);
        entries = k + (uint64_t)l->keys_indices + 8;
    }
    put64(im, k, 0, 1);
    put64(im, k, l->keys_nentries, n);
    size_t key_off = entry == 16 ? 0 : 8;
    for (size_t i = 0; i < n; i++) {
        put64(im, entries + i * entry, (int64_t)key_off, keys[i]);
        put64(im, entries + i * entry, (int64_t)key_off + 8, split ? 0 : values[i]);
    }
    return k;
}

static uint64_t make_dict(struct image *im, const uint64_t *keys, const uint64_t *values, size_t n,
                          int unicode)
{
    uint64_t d = obj(im, im->t_dict, 64);
    put64(im, d, im->l->dict_used, n);
    put64(im, d, im->l->dict_keys, make_keys(im, keys, values, n, unicode, 0));
    return d;
}

/* A PyDictValues (3.11+) / value array (≤3.10) of n values at a. */
static void fill_values(struct image *im, uint64_t a, const uint64_t *values, size_t n)
{
    const struct py_objlayout *l = im->l;
    uint64_t base = a + (uint64_t)(l->values_items != PY_OFF_NONE ? l->values_items : 0);
    if (l->values_valid != PY_OFF_NONE) {
        put8(im, a, 0, 8);             /* capacity */
        put8(im, a, 1, (uint8_t)n);    /* size */
        put8(im, a, l->values_valid, 1);
    }
    for (size_t i = 0; i < n; i++)
        put64(im, base + 8 * i, 0, values[i]);
}

static void build(struct image *im, int minor)
{
    memset(im, 0, sizeof *im);
    im->l = py_objlayout_for(3, minor);
    assert_non_null(im->l);
    im->mem = malloc(IMG_SIZE);
    assert_non_null(im->mem);
    const struct py_objlayout *l = im->l;
    uint64_t lsub = (uint64_t)l->flag_long_subclass;
    im->t_none = make_type(im, "NoneType", 0);
    im->t_bool = make_type(im, "bool", lsub);
    im->t_int = make_type(im, "int", lsub);
    im->t_float = make_type(im, "float", 0);
    im->t_str = make_type(im, "str", (uint64_t)l->flag_unicode_subclass);
    im->t_bytes = make_type(im, "bytes", (uint64_t)l->flag_bytes_subclass);
    im->t_tuple = make_type(im, "tuple", (uint64_t)l->flag_tuple_subclass);
    im->t_list = make_type(im, "list", (uint64_t)l->flag_list_subclass);
    im->t_dict = make_type(im, "dict", (uint64_t)l->flag_dict_subclass);
    im->t_module = make_type(im, "module", 0);
    im->t_cell = make_type(im, "cell", 0);
    im->t_object = make_type(im, "object", 0);
    im->t_code = make_type(im, "code", 0);
    im->none = obj(im, im->t_none, 16);
    uint32_t one = 1;
    im->true_ = make_long_type(im, im->t_bool, 1, &one, 1);
    im->false_ = make_long_type(im, im->t_bool, 0, NULL, 0);
}

static const int MINORS[] = {8, 10, 11, 12, 13};
#define NMINORS (sizeof MINORS / sizeof MINORS[0])

struct fixture {
    struct image im;
    struct reader *reader;
    struct py_objctx ctx;
};

static void open_ctx(struct fixture *f, int minor)
{
    struct pm_error err;
    f->reader = reader_buffer_new(f->im.mem, IMG_SIZE, IMG_BASE);
    assert_non_null(f->reader);
    assert_int_equal(py_objctx_init(&f->ctx, f->reader, 3, minor, &err), 0);
}

static void close_fixture(struct fixture *f)
{
    reader_close(f->reader);
    free(f->im.mem);
}

static void expect_repr(struct fixture *f, uint64_t addr, const char *want)
{
    char out[PY_REPR_MAX + 1];
    struct pm_error err;
    if (py_repr(&f->ctx, addr, out, sizeof out, &err) != 0)
        fail_msg("3.%d: repr failed: %s", f->im.l->minor, err.msg);
    if (strcmp(out, want) != 0)
        fail_msg("3.%d: repr %s, want %s", f->im.l->minor, out, want);
}

/* ---- reprs over an image -------------------------------------------------- */

static void test_reprs(void **state)
{
    (void)state;
    for (size_t v = 0; v < NMINORS; v++) {
        struct fixture f;
        build(&f.im, MINORS[v]);
        struct image *im = &f.im;
        uint64_t i_big = make_int(im, -1234567890123456789ll);
        uint64_t i_zero = make_int(im, 0), i_7 = make_int(im, 7), i_1 = make_int(im, 1),
                 i_2 = make_int(im, 2);
        uint64_t fl = make_float(im, 0.1);
        uint64_t s = make_ascii(im, "it's");
        const uint16_t lam[] = {0x3bb, 'x', '"'};
        uint64_t s2 = make_ucs2(im, lam, 3);
        uint64_t by = make_bytes(im, "\x00" "ab", 3);
        uint64_t tup1 = make_tuple(im, &i_1, 1);
        uint64_t tup0 = make_tuple(im, NULL, 0);
        uint64_t l_items[] = {i_1, make_ascii(im, "two"), make_float(im, 3.0)};
        uint64_t lst = make_list(im, l_items, 3);
        uint64_t inner_items[] = {i_1, i_2};
        uint64_t k = make_ascii(im, "k"), inner = make_list(im, inner_items, 2);
        uint64_t d = make_dict(im, &k, &inner, 1, 1);
        uint64_t gk[] = {i_1, im->none};
        uint64_t gv[] = {s, tup0};
        uint64_t gd = make_dict(im, gk, gv, 2, 0);
        uint64_t many_items[20];
        for (int i = 0; i < 20; i++)
            many_items[i] = make_int(im, i);
        uint64_t many = make_list(im, many_items, 20);
        uint64_t level2 = make_list(im, &i_1, 1), level1 = make_list(im, &level2, 1),
                 level0 = make_list(im, &level1, 1);
        uint64_t o = obj(im, im->t_object, 16);
        /* 2**100 */
        uint32_t huge_digits[] = {0, 0, 0, 1u << 10};
        uint64_t huge = make_long_type(im, im->t_int, 1, huge_digits, 4);
        open_ctx(&f, MINORS[v]);

        expect_repr(&f, im->none, "None");
        expect_repr(&f, im->true_, "True");
        expect_repr(&f, im->false_, "False");
        expect_repr(&f, i_zero, "0");
        expect_repr(&f, i_7, "7");
        expect_repr(&f, i_big, "-1234567890123456789");
        expect_repr(&f, huge, "1267650600228229401496703205376");
        expect_repr(&f, fl, "0.1");
        expect_repr(&f, s, "\"it's\"");
        expect_repr(&f, s2, "'\xce\xbbx\"'");
        expect_repr(&f, by, "b'\\x00ab'");
        expect_repr(&f, tup1, "(1,)");
        expect_repr(&f, tup0, "()");
        expect_repr(&f, lst, "[1, 'two', 3.0]");
        expect_repr(&f, d, "{'k': [1, 2]}");
        expect_repr(&f, gd, "{1: \"it's\", None: ()}");
        expect_repr(&f, many, "[0, 1, 2, 3, 4, 5, 6, 7, ...]");
        expect_repr(&f, level0, "[[[...]]]");
        char want[64];
        snprintf(want, sizeof want, "<object object at 0x%llx>", (unsigned long long)o);
        expect_repr(&f, o, want);

        uint64_t value;
        struct pm_error err;
        assert_int_equal(py_long_u64(&f.ctx, i_big, &value, &err), 0);
        assert_int_equal((int64_t)value, -1234567890123456789ll);
        assert_int_equal(py_long_u64(&f.ctx, huge, &value, &err), -1);
        assert_int_equal(err.code, PM_ETORN);
        assert_int_equal(py_dict_get_str(&f.ctx, d, "k", &value, &err), 0);
        assert_int_equal(value, inner);
        assert_int_equal(py_dict_get_str(&f.ctx, d, "x", &value, &err), 0);
        assert_int_equal(value, 0);
        assert_int_equal(py_dict_get_str(&f.ctx, lst, "k", &value, &err), -1);
        close_fixture(&f);
    }
}

static void test_long_output_is_cut(void **state)
{
    (void)state;
    struct fixture f;
    build(&f.im, 12);
    char text[300];
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    uint64_t s = make_ascii(&f.im, text);
    open_ctx(&f, 12);
    char out[PY_REPR_MAX + 1];
    assert_int_equal(py_repr(&f.ctx, s, out, sizeof out, NULL), 0);
    assert_int_equal(strlen(out), PY_REPR_MAX);
    assert_memory_equal(out, "'aaa", 4);
    assert_string_equal(out + PY_REPR_MAX - 3, "...");
    close_fixture(&f);
}

static void test_broken(void **state)
{
    (void)state;
    for (size_t v = 0; v < NMINORS; v++) {
        struct fixture f;
        build(&f.im, MINORS[v]);
        struct image *im = &f.im;
        uint64_t i_1 = make_int(im, 1);
        uint64_t bad_items[] = {i_1, BAD_PTR};
        uint64_t with_bad = make_list(im, bad_items, 2);
        /* a list that contains itself */
        uint64_t self = make_list(im, &i_1, 1);
        uint64_t array;
        memcpy(&array, at(im, self + (uint64_t)im->l->list_items, 8), 8);
        put64(im, array, 0, self);
        /* absurd sizes */
        uint64_t huge_list = make_list(im, &i_1, 1);
        put64(im, huge_list, im->l->ob_size, 1ull << 62);
        uint64_t neg_tuple = make_tuple(im, &i_1, 1);
        put64(im, neg_tuple, im->l->ob_size, (uint64_t)-5);
        uint64_t bad_str = make_ascii(im, "abc");
        put64(im, bad_str, im->l->unicode_length, (uint64_t)-1);
        uint64_t k = make_ascii(im, "k");
        uint64_t bad_dict = make_dict(im, &k, &i_1, 1, 1);
        uint64_t keys;
        memcpy(&keys, at(im, bad_dict + (uint64_t)im->l->dict_keys, 8), 8);
        put64(im, keys, im->l->keys_nentries, 1000);    /* more entries than slots */
        uint64_t list_bad_array = make_list(im, &i_1, 1);
        put64(im, list_bad_array, im->l->list_items, BAD_PTR);
        /* an object whose type pointer leads nowhere */
        uint64_t no_type = obj(im, BAD_PTR, 16);
        open_ctx(&f, MINORS[v]);

        expect_repr(&f, with_bad, "[1, <unreadable>]");
        expect_repr(&f, self, "[[[...]]]");
        char out[PY_REPR_MAX + 1];
        struct pm_error err;
        assert_int_equal(py_repr(&f.ctx, BAD_PTR, out, sizeof out, &err), -1);
        assert_string_equal(out, "<unreadable>");
        assert_int_equal(py_repr(&f.ctx, no_type, out, sizeof out, &err), -1);
        assert_string_equal(out, "<unreadable>");
        assert_int_equal(py_repr(&f.ctx, huge_list, out, sizeof out, &err), -1);
        assert_int_equal(err.code, PM_ETORN);
        assert_int_equal(py_repr(&f.ctx, neg_tuple, out, sizeof out, &err), -1);
        assert_int_equal(py_repr(&f.ctx, bad_str, out, sizeof out, &err), -1);
        assert_int_equal(py_repr(&f.ctx, bad_dict, out, sizeof out, &err), -1);
        assert_int_equal(err.code, PM_ETORN);
        assert_int_equal(py_repr(&f.ctx, list_bad_array, out, sizeof out, &err), -1);
        assert_int_equal(err.code, PM_EREAD);
        close_fixture(&f);
    }
}

/* ---- instance attributes ------------------------------------------------ */

/* An instance of a user class whose attribute `_name` is name_value, kept
 * the way version `minor` keeps it; `as_dict` forces a materialised dict. */
static uint64_t make_instance(struct image *im, uint64_t name_value, int as_dict)
{
    const struct py_objlayout *l = im->l;
    uint64_t key_names[] = {make_ascii(im, "_target"), make_ascii(im, "_name")};
    uint64_t values[] = {im->none, name_value};
    uint64_t flags = (uint64_t)l->flag_heaptype;
    if (l->flag_managed_dict != PY_OFF_NONE)
        flags |= (uint64_t)l->flag_managed_dict;
    if (l->flag_inline_values != PY_OFF_NONE)
        flags |= (uint64_t)l->flag_inline_values;
    uint64_t type = make_type(im, "Thread", flags);
    uint64_t base = img_alloc(im, 96);
    uint64_t o = base + 32;     /* room for the pre-header */
    put64(im, o, 0, 1);
    put64(im, o, l->ob_type, type);
    uint64_t dict = make_dict(im, key_names, values, 2, 1);
    switch (l->managed_kind) {
    case PY_MANAGED_NONE:
        put64(im, type, l->type_dictoffset, 16);
        put64(im, o, 16, dict);
        break;
    case PY_MANAGED_311:
    case PY_MANAGED_312:
    case PY_MANAGED_313: {
        put64(im, type, l->type_dictoffset, (uint64_t)-1);
        put64(im, type, l->heaptype_cached_keys, make_keys(im, key_names, NULL, 2, 1, 1));
        if (as_dict) {
            put64(im, o, l->managed_dict_offset, dict);
        } else if (l->managed_kind == PY_MANAGED_311) {
            uint64_t vals = img_alloc(im, 64);
            fill_values(im, vals, values, 2);
            put64(im, o, l->managed_values_offset, vals);
        } else if (l->managed_kind == PY_MANAGED_312) {
            uint64_t vals = img_alloc(im, 64) + 8;   /* values are 8-aligned: stored minus one */
            fill_values(im, vals, values, 2);
            put64(im, o, l->managed_dict_offset, vals - 1);
        } else {
            fill_values(im, o + (uint64_t)l->inline_values_offset, values, 2);
        }
        break;
    }
    }
    return o;
}

static void test_instance_attrs(void **state)
{
    (void)state;
    for (size_t v = 0; v < NMINORS; v++) {
        for (int as_dict = 0; as_dict < 2; as_dict++) {
            struct fixture f;
            build(&f.im, MINORS[v]);
            uint64_t name = make_ascii(&f.im, "worker-1");
            uint64_t o = make_instance(&f.im, name, as_dict);
            open_ctx(&f, MINORS[v]);
            uint64_t value;
            struct pm_error err;
            if (py_object_attr(&f.ctx, o, "_name", &value, &err) != 0)
                fail_msg("3.%d: %s", MINORS[v], err.msg);
            if (value != name)
                fail_msg("3.%d (dict %d): _name not found", MINORS[v], as_dict);
            assert_int_equal(py_object_attr(&f.ctx, o, "_other", &value, &err), 0);
            assert_int_equal(value, 0);
            close_fixture(&f);
        }
    }
}

/* ---- thread names ------------------------------------------------------- */

static void test_thread_names(void **state)
{
    (void)state;
    for (size_t v = 0; v < NMINORS; v++) {
        struct fixture f;
        struct image *im = &f.im;
        build(im, MINORS[v]);
        const struct py_objlayout *l = im->l;
        uint64_t idents[] = {make_int(im, 140000000000001ll), make_int(im, 140000000000002ll)};
        const uint16_t lam[] = {0x3bb, '-', '2'};
        uint64_t threads[] = {make_instance(im, make_ascii(im, "MainThread"), 0),
                              make_instance(im, make_ucs2(im, lam, 3), 1)};
        uint64_t active = make_dict(im, idents, threads, 2, 0);
        uint64_t md_keys[] = {make_ascii(im, "_limbo"), make_ascii(im, "_active")};
        uint64_t md_values[] = {im->none, active};
        uint64_t md_dict = make_dict(im, md_keys, md_values, 2, 1);
        uint64_t module = obj(im, im->t_module, 64);
        put64(im, module, l->module_dict, md_dict);
        uint64_t mod_keys[] = {make_ascii(im, "sys"), make_ascii(im, "threading")};
        uint64_t mod_values[] = {im->none, module};
        uint64_t modules = make_dict(im, mod_keys, mod_values, 2, 1);
        uint64_t interp = img_alloc(im, (size_t)l->interp_modules + 8);
        put64(im, interp, l->interp_modules, modules);
        uint64_t bare_interp = img_alloc(im, (size_t)l->interp_modules + 8);
        open_ctx(&f, MINORS[v]);

        struct py_thread_names *tn = py_thread_names_new();
        assert_non_null(tn);
        struct py_thread t = {.interp = interp, .thread_id = 140000000000001ull};
        const char *name = py_thread_name(tn, &f.ctx, &t);
        assert_non_null(name);
        assert_string_equal(name, "MainThread");
        t.thread_id = 140000000000002ull;
        name = py_thread_name(tn, &f.ctx, &t);
        assert_non_null(name);
        assert_string_equal(name, "\xce\xbb-2");
        t.thread_id = 5;
        assert_null(py_thread_name(tn, &f.ctx, &t));
        /* no sys.modules yet, or no threading: no names, no error */
        struct py_thread bare = {.interp = bare_interp, .thread_id = 1};
        assert_null(py_thread_name(tn, &f.ctx, &bare));
        struct pm_error err;
        assert_int_equal(py_thread_names_refresh(tn, &f.ctx, bare_interp, &err), 0);
        /* a broken sys.modules fails the refresh but keeps the names */
        put64(im, interp, l->interp_modules, BAD_PTR);
        assert_int_equal(py_thread_names_refresh(tn, &f.ctx, interp, &err), -1);
        t.thread_id = 140000000000001ull;
        assert_string_equal(py_thread_name(tn, &f.ctx, &t), "MainThread");
        py_thread_names_free(tn);
        close_fixture(&f);
    }
}

/* ---- frame locals ------------------------------------------------------- */

/* def fn(a, *args): cap = a; x = 1; (y unbound); cap is captured by an
 * inner function.  Returns the frame; *code_out the code object. */
static uint64_t make_frame(struct image *im, uint64_t *code_out)
{
    const struct py_objlayout *l = im->l;
    uint64_t n_a = make_ascii(im, "a"), n_args = make_ascii(im, "args"),
             n_x = make_ascii(im, "x"), n_y = make_ascii(im, "y"),
             n_cap = make_ascii(im, "cap"), n_free = make_ascii(im, "outer");
    uint64_t v_a = make_int(im, 41), v_x = make_int(im, 1), v_cap = make_ascii(im, "captured");
    uint64_t v_args = make_tuple(im, &v_x, 1);
    uint64_t cell = obj(im, im->t_cell, 24);
    put64(im, cell, l->cell_ref, v_cap);
    uint64_t free_cell = obj(im, im->t_cell, 24);
    put64(im, free_cell, l->cell_ref, v_x);
    uint64_t code = obj(im, im->t_code, 256);
    put32(im, code, l->code_argcount, 1);
    put32(im, code, l->code_kwonlyargcount, 0);
    put32(im, code, l->code_flags, (uint32_t)l->flag_varargs);
    uint64_t frame = img_alloc(im, 1024);
    uint64_t slots_at = frame + (uint64_t)(l->frame_localsplus != PY_OFF_NONE
                                               ? l->frame_localsplus : l->iframe_localsplus);
    if (l->code_varnames != PY_OFF_NONE) {
        uint64_t varnames[] = {n_a, n_args, n_x, n_y};
        uint64_t cellvars[] = {n_cap};
        put32(im, code, l->code_nlocals, 4);
        put64(im, code, l->code_varnames, make_tuple(im, varnames, 4));
        put64(im, code, l->code_cellvars, make_tuple(im, cellvars, 1));
        uint64_t slots[] = {v_a, v_args, v_x, 0, cell};
        memcpy(at(im, slots_at, sizeof slots), slots, sizeof slots);
    } else {
        uint8_t local = (uint8_t)l->fast_local, cellk = (uint8_t)l->fast_cell,
                freek = (uint8_t)l->fast_free;
        uint64_t names[] = {n_a, n_args, n_x, n_y, n_cap, n_free};
        uint8_t kinds[] = {local, local, local, local, cellk, freek};
        put64(im, code, l->code_localsplusnames, make_tuple(im, names, 6));
        put64(im, code, l->code_localspluskinds, make_bytes(im, kinds, 6));
        uint64_t slots[] = {v_a, v_args, v_x, 0, cell, free_cell};
        memcpy(at(im, slots_at, sizeof slots), slots, sizeof slots);
    }
    *code_out = code;
    return frame;
}

static void test_frame_locals(void **state)
{
    (void)state;
    for (size_t v = 0; v < NMINORS; v++) {
        struct fixture f;
        build(&f.im, MINORS[v]);
        uint64_t code_addr;
        uint64_t frame = make_frame(&f.im, &code_addr);
        open_ctx(&f, MINORS[v]);
        struct py_code code = {.addr = code_addr, .name = "fn", .filename = "t.py"};
        struct py_frame fr = {.code = &code, .line = 1, .addr = frame};
        struct py_local locals[8];
        size_t count;
        struct pm_error err;
        if (py_frame_locals(&f.ctx, &fr, locals, 8, &count, &err) != 0)
            fail_msg("3.%d: %s", MINORS[v], err.msg);
        static const char *names[] = {"a", "args", "x", "cap"};
        static const char *reprs[] = {"41", "(1,)", "1", "'captured'"};
        static const int args[] = {1, 1, 0, 0};
        assert_int_equal(count, 4);
        for (size_t i = 0; i < count; i++) {
            char out[PY_REPR_MAX + 1];
            assert_string_equal(locals[i].name, names[i]);
            assert_int_equal(locals[i].is_arg, args[i]);
            assert_int_equal(py_repr(&f.ctx, locals[i].value, out, sizeof out, &err), 0);
            assert_string_equal(out, reprs[i]);
        }
        /* the cap bounds the output */
        assert_int_equal(py_frame_locals(&f.ctx, &fr, locals, 2, &count, &err), 0);
        assert_int_equal(count, 2);
        /* a code object whose names are not a tuple */
        int64_t names_off = f.im.l->code_varnames != PY_OFF_NONE ? f.im.l->code_varnames
                                                                : f.im.l->code_localsplusnames;
        put64(&f.im, code_addr, names_off, f.im.none);
        assert_int_equal(py_frame_locals(&f.ctx, &fr, locals, 8, &count, &err), -1);
        assert_int_equal(err.code, PM_ETORN);
        put64(&f.im, code_addr, names_off, BAD_PTR);
        assert_int_equal(py_frame_locals(&f.ctx, &fr, locals, 8, &count, &err), -1);
        close_fixture(&f);
    }
}

static void test_unsupported_version(void **state)
{
    (void)state;
    struct py_objctx ctx;
    struct pm_error err;
    assert_int_equal(py_objctx_init(&ctx, NULL, 2, 7, &err), -1);
    assert_int_equal(err.code, PM_EUNSUPPORTED);
    for (int minor = 8; minor <= 13; minor++)
        assert_non_null(py_objlayout_for(3, minor));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float),
        cmocka_unit_test(test_str_escapes),
        cmocka_unit_test(test_bytes_escapes),
        cmocka_unit_test(test_digits),
        cmocka_unit_test(test_reprs),
        cmocka_unit_test(test_long_output_is_cut),
        cmocka_unit_test(test_broken),
        cmocka_unit_test(test_instance_attrs),
        cmocka_unit_test(test_thread_names),
        cmocka_unit_test(test_frame_locals),
        cmocka_unit_test(test_unsupported_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
