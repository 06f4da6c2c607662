/*
 * test_debug_offsets.c — CPython 3.13's _Py_DebugOffsets (python/debug_offsets.h).
 *
 * The block under test is the real one: the first DEBUG_OFFSETS_MAX_SIZE
 * bytes of the `.PyRuntime` section of an installed libpython3.13, read from
 * the file through target/elf.h (the tests are skipped, saying why, when no
 * 3.13 is installed).  The expected layout values are not taken from the
 * block: they were computed by the C compiler from 3.13.0's own headers with
 * this probe (gcc -I/root/.pyenv/versions/3.13.0/include/python3.13 probe.c):
 *
 *     #define Py_BUILD_CORE 1
 *     #include <Python.h>
 *     #include "internal/pycore_runtime.h"
 *     #include "internal/pycore_interp.h"
 *     #include "internal/pycore_frame.h"
 *     #include "internal/pycore_code.h"
 *     printf("%zu\n", offsetof(PyThreadState, current_frame));   // and so on
 *
 * The word index of each field is taken from a copy of the 3.13 declaration
 * below (struct debug_offsets_313), not from debug_offsets.c.  Negative
 * cases (bad cookie, other version, free-threaded, each offset outside its
 * struct, every short length) run on exact-size heap copies so ASan catches
 * any read past `len`.
 */
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "python/debug_offsets.h"
#include "target/elf.h"

/* Include/internal/pycore_runtime.h of CPython 3.13, field for field. */
struct debug_offsets_313 {
    char cookie[8];
    uint64_t version;
    uint64_t free_threaded;
    struct { uint64_t size, finalizing, interpreters_head; } runtime_state;
    struct {
        uint64_t size, id, next, threads_head, gc, imports_modules, sysdict, builtins,
            ceval_gil, gil_runtime_state, gil_runtime_state_enabled, gil_runtime_state_locked,
            gil_runtime_state_holder;
    } interpreter_state;
    struct {
        uint64_t size, prev, next, interp, current_frame, thread_id, native_thread_id,
            datastack_chunk, status;
    } thread_state;
    struct { uint64_t size, previous, executable, instr_ptr, localsplus, owner; } interpreter_frame;
    struct {
        uint64_t size, filename, name, qualname, linetable, firstlineno, argcount,
            localsplusnames, localspluskinds, co_code_adaptive;
    } code_object;
    struct { uint64_t size, ob_type; } pyobject;
    struct { uint64_t size, tp_name, tp_repr, tp_flags; } type_object;
    struct { uint64_t size, ob_item, ob_size; } tuple_object;
    struct { uint64_t size, ob_item, ob_size; } list_object;
    struct { uint64_t size, ma_keys, ma_values; } dict_object;
    struct { uint64_t size, ob_fval; } float_object;
    struct { uint64_t size, lv_tag, ob_digit; } long_object;
    struct { uint64_t size, ob_size, ob_sval; } bytes_object;
    struct { uint64_t size, state, length, asciiobject_size; } unicode_object;
    struct { uint64_t size, collecting; } gc;
};

#define DO_OFF(field) offsetof(struct debug_offsets_313, field)
#define VERSION_3_13_0 0x030D00F0ull

static uint8_t real_block[DEBUG_OFFSETS_MAX_SIZE];
static int have_real_block;
static char real_path[4096];
static char skip_reason[4200 + 512] = "no CPython 3.13 found";

static int load_real_block(void **state)
{
    (void)state;
    glob_t g;
    if (glob("/root/.pyenv/versions/3.13.*/lib/libpython3.13.so.1.0", 0, NULL, &g) != 0) {
        snprintf(skip_reason, sizeof skip_reason,
                 "no /root/.pyenv/versions/3.13.*/lib/libpython3.13.so.1.0 installed");
        return 0;
    }
    snprintf(real_path, sizeof real_path, "%s", g.gl_pathv[0]);
    globfree(&g);
    struct elf_image *img;
    struct pm_error err = {0};
    if (elf_open(real_path, &img, &err) != 0) {
        snprintf(skip_reason, sizeof skip_reason, "cannot open %s: %s", real_path, err.msg);
        return 0;
    }
    uint64_t addr, size;
    if (elf_section(img, ".PyRuntime", &addr, &size) != 0 || size < sizeof real_block ||
        elf_read_vaddr(img, addr, real_block, sizeof real_block) != 0) {
        elf_close(img);
        /* a 3.13 without the section is a real failure, not a skip */
        fprintf(stderr, "%s: no readable .PyRuntime section\n", real_path);
        return -1;
    }
    elf_close(img);
    have_real_block = 1;
    return 0;
}

#define REQUIRE_REAL_BLOCK()                                   \
    do {                                                       \
        if (!have_real_block) {                                \
            print_message("skipped: %s\n", skip_reason);       \
            skip();                                            \
        }                                                      \
    } while (0)

/* Parse an exact-size heap copy of the first len bytes of block. */
static int parse_copy(const uint8_t *block, size_t len, uint64_t version_hex,
                      struct py_layout *out, struct pm_error *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, block, len);
    int rc = debug_offsets_parse(copy, len, version_hex, out, err);
    free(copy);
    return rc;
}

static void put_word(uint8_t *block, size_t off, uint64_t v)
{
    memcpy(block + off, &v, sizeof v);
}

static uint64_t get_word(const uint8_t *block, size_t off)
{
    uint64_t v;
    memcpy(&v, block + off, sizeof v);
    return v;
}

/* ---- the real block ----------------------------------------------------- */

static void test_real_block_header(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    assert_memory_equal(real_block, "xdebugpy", 8);
    uint64_t version = get_word(real_block, DO_OFF(version));
    assert_int_equal(version >> 16, 0x030D);
    if (strstr(real_path, "/3.13.0/") != NULL)
        assert_int_equal(version, VERSION_3_13_0);
    assert_int_equal(get_word(real_block, DO_OFF(free_threaded)), 0);
}

static void test_real_block_layout(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    struct py_layout l;
    struct pm_error err = {0};
    if (debug_offsets_parse(real_block, sizeof real_block, VERSION_3_13_0, &l, &err) != 0)
        fail_msg("parse failed: %s", err.msg);

    assert_int_equal(l.major, 3);
    assert_int_equal(l.minor, 13);
    assert_int_equal(l.lines, PY_LINES_LOCATIONS);
    assert_int_equal(l.frames, PY_FRAMES_DIRECT);

    /* _PyRuntimeState */
    assert_int_equal(l.runtime_size, 283320);
    assert_int_equal(l.runtime_finalizing, 608);
    assert_int_equal(l.runtime_interpreters_head, 632);
    assert_int_equal(l.runtime_gil_locked, PY_OFF_NONE);
    assert_int_equal(l.runtime_gil_last_holder, PY_OFF_NONE);
    /* PyInterpreterState */
    assert_int_equal(l.interp_size, 194968);
    assert_int_equal(l.interp_next, 7264);
    assert_int_equal(l.interp_threads_head, 7344);
    assert_int_equal(l.interp_id, 7272);
    assert_int_equal(l.interp_modules, 7656);
    assert_int_equal(l.interp_gil_ptr, 16);        /* ceval.gil, a pointer */
    assert_int_equal(l.gil_locked, 16);            /* in struct _gil_runtime_state */
    assert_int_equal(l.gil_last_holder, 8);
    /* PyThreadState */
    assert_int_equal(l.tstate_size, 304);
    assert_int_equal(l.tstate_prev, 0);
    assert_int_equal(l.tstate_next, 8);
    assert_int_equal(l.tstate_interp, 16);
    assert_int_equal(l.tstate_frame, 72);          /* current_frame */
    assert_int_equal(l.tstate_thread_id, 152);
    assert_int_equal(l.tstate_native_thread_id, 160);
    assert_int_equal(l.cframe_current_frame, PY_OFF_NONE);
    /* no PyFrameObject walk in 3.13 */
    assert_int_equal(l.frame_back, PY_OFF_NONE);
    assert_int_equal(l.frame_code, PY_OFF_NONE);
    assert_int_equal(l.frame_lasti, PY_OFF_NONE);
    assert_int_equal(l.frame_lineno, PY_OFF_NONE);
    /* _PyInterpreterFrame */
    assert_int_equal(l.iframe_size, 72);
    assert_int_equal(l.iframe_previous, 8);
    assert_int_equal(l.iframe_code, 0);            /* f_executable */
    assert_int_equal(l.iframe_instr, 56);          /* instr_ptr */
    assert_int_equal(l.iframe_owner, 70);
    assert_int_equal(l.iframe_localsplus, 72);
    /* PyCodeObject */
    assert_int_equal(l.code_filename, 112);
    assert_int_equal(l.code_name, 120);
    assert_int_equal(l.code_qualname, 128);
    assert_int_equal(l.code_firstlineno, 68);
    assert_int_equal(l.code_linetable, 136);
    assert_int_equal(l.code_code, PY_OFF_NONE);
    assert_int_equal(l.code_adaptive, 200);
    assert_int_equal(l.code_argcount, 52);
    assert_int_equal(l.code_varnames, 96);         /* co_localsplusnames */
    assert_true(l.code_size >= l.code_linetable + 8);
    assert_true(l.code_size <= 208);               /* sizeof(PyCodeObject) */
    /* objects */
    assert_int_equal(l.ob_type, 8);
    assert_int_equal(l.ob_size, 16);
    assert_int_equal(l.type_name, 24);
    assert_int_equal(l.type_flags, 168);
    assert_int_equal(l.bytes_sval, 32);
    assert_int_equal(l.unicode_length, 16);
    assert_int_equal(l.unicode_state, 32);
    assert_int_equal(l.unicode_ascii_size, 40);    /* sizeof(PyASCIIObject) */
    assert_int_equal(l.unicode_compact_size, 56);  /* sizeof(PyCompactUnicodeObject) */
    assert_int_equal(l.unicode_legacy_data, PY_OFF_NONE);
}

/* The parser needs no more than the declared struct: exactly its size works. */
static void test_real_block_exact_size(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    assert_int_equal(sizeof(struct debug_offsets_313), 584);
    struct py_layout l;
    struct pm_error err = {0};
    assert_int_equal(parse_copy(real_block, sizeof(struct debug_offsets_313), VERSION_3_13_0,
                                &l, &err), 0);
    assert_int_equal(l.tstate_frame, 72);
    /* any 3.13.x serial is the same minor */
    assert_int_equal(parse_copy(real_block, sizeof real_block, 0x030D05F0ull, &l, &err), 0);
    assert_int_equal(parse_copy(real_block, sizeof real_block, 0x030D00A1ull, &l, &err), 0);
}

/* ---- refusals ---------------------------------------------------------- */

/* 1 when parsing a heap copy of block is refused with PM_EUNSUPPORTED and a
 * message; otherwise says why on stderr and returns 0. */
static int refused(const uint8_t *block, size_t len, uint64_t version_hex, const char *what)
{
    struct py_layout l;
    memset(&l, 0x5a, sizeof l);
    struct pm_error err = {0};
    int rc = parse_copy(block, len, version_hex, &l, &err);
    if (rc != -1 || err.code != PM_EUNSUPPORTED || err.msg[0] == '\0') {
        print_error("%s: rc %d, code %d (\"%s\"), expected PM_EUNSUPPORTED\n", what, rc,
                    (int)err.code, err.msg);
        return 0;
    }
    return 1;
}

static void expect_refused(const uint8_t *block, size_t len, uint64_t version_hex,
                           const char *what)
{
    if (!refused(block, len, version_hex, what))
        fail_msg("%s was accepted", what);
}

static void test_bad_cookie(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    uint8_t block[DEBUG_OFFSETS_MAX_SIZE];
    memcpy(block, real_block, sizeof block);
    block[7] = 'z';
    expect_refused(block, sizeof block, VERSION_3_13_0, "cookie xdebugpz");
    memcpy(block, real_block, sizeof block);
    block[0] = 'X';
    expect_refused(block, sizeof block, VERSION_3_13_0, "cookie Xdebugpy");
    memset(block, 0, sizeof block);
    expect_refused(block, sizeof block, VERSION_3_13_0, "all zeros");
}

static void test_version_mismatch(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    expect_refused(real_block, sizeof real_block, 0x030c0000ull, "library says 3.12");
    expect_refused(real_block, sizeof real_block, 0x030e0000ull, "library says 3.14");
    expect_refused(real_block, sizeof real_block, 0x020d0000ull, "library says 2.13");
    expect_refused(real_block, sizeof real_block, 0, "library says 0");

    /* a block and a library agreeing on a version this parser does not know */
    uint8_t block[DEBUG_OFFSETS_MAX_SIZE];
    memcpy(block, real_block, sizeof block);
    put_word(block, DO_OFF(version), 0x030E00A1ull);
    expect_refused(block, sizeof block, 0x030E00A1ull, "3.14 block, 3.14 library");
    put_word(block, DO_OFF(version), 0x030C01F0ull);
    expect_refused(block, sizeof block, 0x030C01F0ull, "3.12 block, 3.12 library");
}

static void test_free_threaded(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    uint8_t block[DEBUG_OFFSETS_MAX_SIZE];
    memcpy(block, real_block, sizeof block);
    put_word(block, DO_OFF(free_threaded), 1);
    expect_refused(block, sizeof block, VERSION_3_13_0, "free_threaded = 1");
    put_word(block, DO_OFF(free_threaded), 1ull << 40);
    expect_refused(block, sizeof block, VERSION_3_13_0, "free_threaded = 1 << 40");
}

/* Every length short of the declared struct is refused without reading past it. */
static void test_too_short(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    for (size_t len = 0; len < sizeof(struct debug_offsets_313); len++) {
        char what[64];
        snprintf(what, sizeof what, "block of %zu bytes", len);
        expect_refused(real_block, len, VERSION_3_13_0, what);
    }
}

/* Each offset the parser turns into a layout field, with the size it must
 * lie inside.  extra: 1 for offsets that may equal the size (the start of a
 * variable-size tail: co_code_adaptive, ob_sval, localsplus, ascii data). */
struct checked_offset {
    const char *name;
    size_t off, size_off;
    int extra;
};

#define CHECKED(group, field, extra) {#group "." #field, DO_OFF(group.field), DO_OFF(group.size), extra}
static const struct checked_offset checked_offsets[] = {
    CHECKED(runtime_state, finalizing, 0),
    CHECKED(runtime_state, interpreters_head, 0),
    CHECKED(interpreter_state, id, 0),
    CHECKED(interpreter_state, next, 0),
    CHECKED(interpreter_state, threads_head, 0),
    CHECKED(interpreter_state, imports_modules, 0),
    CHECKED(interpreter_state, ceval_gil, 0),
    CHECKED(interpreter_state, gil_runtime_state, 0),
    CHECKED(interpreter_state, gil_runtime_state_locked, 0),
    CHECKED(interpreter_state, gil_runtime_state_holder, 0),
    CHECKED(thread_state, prev, 0),
    CHECKED(thread_state, next, 0),
    CHECKED(thread_state, interp, 0),
    CHECKED(thread_state, current_frame, 0),
    CHECKED(thread_state, thread_id, 0),
    CHECKED(thread_state, native_thread_id, 0),
    CHECKED(interpreter_frame, previous, 0),
    CHECKED(interpreter_frame, executable, 0),
    CHECKED(interpreter_frame, instr_ptr, 0),
    CHECKED(interpreter_frame, localsplus, 1),
    CHECKED(interpreter_frame, owner, 0),
    CHECKED(code_object, filename, 0),
    CHECKED(code_object, name, 0),
    CHECKED(code_object, qualname, 0),
    CHECKED(code_object, linetable, 0),
    CHECKED(code_object, firstlineno, 0),
    CHECKED(code_object, argcount, 0),
    CHECKED(code_object, localsplusnames, 0),
    CHECKED(code_object, co_code_adaptive, 1),
    CHECKED(pyobject, ob_type, 0),
    CHECKED(type_object, tp_name, 0),
    CHECKED(type_object, tp_flags, 0),
    CHECKED(bytes_object, ob_size, 0),
    CHECKED(bytes_object, ob_sval, 1),
    CHECKED(unicode_object, state, 0),
    CHECKED(unicode_object, length, 0),
    CHECKED(unicode_object, asciiobject_size, 1),
};

static void test_offset_outside_struct(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    uint8_t block[DEBUG_OFFSETS_MAX_SIZE];
    size_t n = sizeof checked_offsets / sizeof checked_offsets[0], accepted = 0;
    for (size_t i = 0; i < n; i++) {
        const struct checked_offset *c = &checked_offsets[i];
        uint64_t size = get_word(real_block, c->size_off);
        char what[128];

        /* one past the end of its struct (or of the struct's tail start) */
        memcpy(block, real_block, sizeof block);
        put_word(block, c->off, size + (uint64_t)c->extra);
        snprintf(what, sizeof what, "%s = size %llu + %d", c->name, (unsigned long long)size,
                 c->extra);
        accepted += !refused(block, sizeof block, VERSION_3_13_0, what);

        /* far away */
        memcpy(block, real_block, sizeof block);
        put_word(block, c->off, 1ull << 40);
        snprintf(what, sizeof what, "%s = 1 << 40", c->name);
        accepted += !refused(block, sizeof block, VERSION_3_13_0, what);

        /* "negative": must not wrap around to look small (or like PY_OFF_NONE) */
        memcpy(block, real_block, sizeof block);
        put_word(block, c->off, UINT64_MAX);
        snprintf(what, sizeof what, "%s = -1", c->name);
        accepted += !refused(block, sizeof block, VERSION_3_13_0, what);
    }
    if (accepted)
        fail_msg("%zu out-of-range offsets were accepted (listed above)", accepted);
}

/* The GIL's fields are given as offsets in the interpreter state; the layout
 * keeps them relative to the embedded GIL state, so they must not lie before it. */
static void test_gil_fields_inside_gil_state(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    uint8_t block[DEBUG_OFFSETS_MAX_SIZE];
    uint64_t gil = get_word(real_block, DO_OFF(interpreter_state.gil_runtime_state));
    assert_int_equal(gil, 7752);
    assert_int_equal(get_word(real_block, DO_OFF(interpreter_state.gil_runtime_state_locked)),
                     gil + 16);
    memcpy(block, real_block, sizeof block);
    put_word(block, DO_OFF(interpreter_state.gil_runtime_state_locked), gil - 8);
    expect_refused(block, sizeof block, VERSION_3_13_0, "gil locked before the gil state");
    memcpy(block, real_block, sizeof block);
    put_word(block, DO_OFF(interpreter_state.gil_runtime_state_holder), 0);
    expect_refused(block, sizeof block, VERSION_3_13_0, "gil holder before the gil state");
}

/* A struct size of zero or of absurd size cannot vouch for its offsets. */
static void test_absurd_struct_sizes(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    static const struct {
        const char *name;
        size_t off;
    } sizes[] = {
        {"runtime_state.size", DO_OFF(runtime_state.size)},
        {"interpreter_state.size", DO_OFF(interpreter_state.size)},
        {"thread_state.size", DO_OFF(thread_state.size)},
        {"interpreter_frame.size", DO_OFF(interpreter_frame.size)},
        {"code_object.size", DO_OFF(code_object.size)},
        {"type_object.size", DO_OFF(type_object.size)},
        {"bytes_object.size", DO_OFF(bytes_object.size)},
        {"unicode_object.size", DO_OFF(unicode_object.size)},
    };
    uint8_t block[DEBUG_OFFSETS_MAX_SIZE];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[128];
        memcpy(block, real_block, sizeof block);
        put_word(block, sizes[i].off, 0);
        snprintf(what, sizeof what, "%s = 0", sizes[i].name);
        expect_refused(block, sizeof block, VERSION_3_13_0, what);
        memcpy(block, real_block, sizeof block);
        put_word(block, sizes[i].off, UINT64_MAX);
        snprintf(what, sizeof what, "%s = UINT64_MAX", sizes[i].name);
        expect_refused(block, sizeof block, VERSION_3_13_0, what);
    }
}

/* Words the parser does not use may hold anything. */
static void test_unused_words_ignored(void **state)
{
    (void)state;
    REQUIRE_REAL_BLOCK();
    uint8_t block[DEBUG_OFFSETS_MAX_SIZE];
    memcpy(block, real_block, sizeof block);
    put_word(block, DO_OFF(tuple_object.ob_item), UINT64_MAX);
    put_word(block, DO_OFF(dict_object.ma_keys), UINT64_MAX);
    put_word(block, DO_OFF(gc.collecting), UINT64_MAX);
    /* and everything after the declared struct */
    memset(block + sizeof(struct debug_offsets_313), 0xee,
           sizeof block - sizeof(struct debug_offsets_313));
    struct py_layout l;
    struct pm_error err = {0};
    assert_int_equal(parse_copy(block, sizeof block, VERSION_3_13_0, &l, &err), 0);
    assert_int_equal(l.code_qualname, 128);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_block_header),
        cmocka_unit_test(test_real_block_layout),
        cmocka_unit_test(test_real_block_exact_size),
        cmocka_unit_test(test_bad_cookie),
        cmocka_unit_test(test_version_mismatch),
        cmocka_unit_test(test_free_threaded),
        cmocka_unit_test(test_too_short),
        cmocka_unit_test(test_offset_outside_struct),
        cmocka_unit_test(test_gil_fields_inside_gil_state),
        cmocka_unit_test(test_absurd_struct_sizes),
        cmocka_unit_test(test_unused_words_ignored),
    };
    return cmocka_run_group_tests(tests, load_real_block, NULL);
}
