/*
 * test_walker.c — the CPython model over synthetic memory (python/process.h).
 *
 * Each test builds a memory image in a local buffer, laid out by the real
 * generated layout tables (py_layout_for(3, 12), (3, 10), (3, 6) and
 * (2, 7): 2.7 with PyStringObject names, interp_head and
 * _PyThreadState_Current instead of _PyRuntime; 3.6 with its GIL statics): a _PyRuntime,
 * interpreters, thread states, 3.12 _PyCFrame / _PyInterpreterFrame chains
 * (in a _PyStackChunk, with a C-stack shim frame outside it) or 3.10
 * PyFrameObject chains, code objects, PEP 393 strings of every kind (compact
 * ASCII, compact latin-1, UCS2 "λ", UCS4, legacy) and bytes objects holding
 * real line tables from tests/unit/linetable_cases.h, whose expected lines are
 * each interpreter's own answers.  Instruction pointers are put at line
 * boundaries so that an off-by-one in the position is seen.
 *
 * The model is opened with py_open_reader over reader_buffer_new, and the
 * tests check exact thread lists and stacks, then break the image: frame
 * loops, a non-code object, pointers outside the image, a looping thread
 * list, deep stacks and caps, implausible strings, a code object replaced at
 * the same address.  The image is an exact-size heap block so ASan sees any
 * read past it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "linetable_cases.h"
#include "python/layout.h"
#include "python/locate.h"
#include "python/process.h"
#include "target/reader.h"

#define IMG_BASE 0x100000ull
#define IMG_SIZE (1u << 20)

/* PyASCIIObject.state bits (interned:2, kind:3, compact:1, ascii:1, ready:1 <= 3.11) */
#define STATE_KIND(k) ((uint32_t)(k) << 2)
#define STATE_COMPACT (1u << 5)
#define STATE_ASCII (1u << 6)
#define STATE_READY (1u << 7)

#define OWNED_BY_THREAD 0
#define OWNED_BY_CSTACK 3

/* ---- the image ---------------------------------------------------------- */

struct image {
    uint8_t *mem;
    size_t used;
    const struct py_layout *l;
    struct py_location loc;
};

static uint64_t img_alloc(struct image *im, size_t size)
{
    size_t at = (im->used + 15) & ~(size_t)15;
    if (at + size > IMG_SIZE)
        fail_msg("image full (%zu + %zu)", at, size);
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
    *at(im, addr + (uint64_t)off, 1) = v;
}

static uint32_t state_extra(const struct image *im)
{
    return im->l->minor <= 11 ? STATE_READY : 0;
}

static size_t str_alloc_size(const struct image *im, size_t data_off, size_t data_len)
{
    size_t need = data_off + data_len;
    return need > (size_t)im->l->unicode_compact_size ? need : (size_t)im->l->unicode_compact_size;
}

/* A compact ASCII str. */
static uint64_t make_ascii(struct image *im, const char *s)
{
    const struct py_layout *l = im->l;
    size_t n = strlen(s);
    uint64_t a = img_alloc(im, str_alloc_size(im, (size_t)l->unicode_ascii_size, n + 1));
    put64(im, a, 0, 1);
    put64(im, a, l->ob_type, im->loc.unicode_type);
    put64(im, a, l->unicode_length, n);
    put32(im, a, l->unicode_state,
          STATE_KIND(1) | STATE_COMPACT | STATE_ASCII | state_extra(im));
    memcpy(at(im, a + (uint64_t)l->unicode_ascii_size, n + 1), s, n + 1);
    return a;
}

/* A compact non-ASCII str of `kind` bytes per character. */
static uint64_t make_compact(struct image *im, int kind, const uint32_t *chars, size_t n)
{
    const struct py_layout *l = im->l;
    size_t data = (size_t)l->unicode_compact_size;
    uint64_t a = img_alloc(im, str_alloc_size(im, data, (n + 1) * (size_t)kind));
    put64(im, a, 0, 1);
    put64(im, a, l->ob_type, im->loc.unicode_type);
    put64(im, a, l->unicode_length, n);
    put32(im, a, l->unicode_state, STATE_KIND(kind) | STATE_COMPACT | state_extra(im));
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = at(im, a + data + i * (size_t)kind, (size_t)kind);
        if (kind == 1) {
            *p = (uint8_t)chars[i];
        } else if (kind == 2) {
            uint16_t c = (uint16_t)chars[i];
            memcpy(p, &c, 2);
        } else {
            memcpy(p, &chars[i], 4);
        }
    }
    return a;
}

static uint64_t make_bytes(struct image *im, const uint8_t *data, size_t len)
{
    const struct py_layout *l = im->l;
    uint64_t a = img_alloc(im, (size_t)l->bytes_sval + len + 1);
    put64(im, a, 0, 1);
    put64(im, a, l->ob_type, im->loc.bytes_type);
    put64(im, a, l->ob_size, len);
    if (len)
        memcpy(at(im, a + (uint64_t)l->bytes_sval, len), data, len);
    return a;
}

static const struct linetable_case *find_case(const char *version, const char *name)
{
    for (size_t i = 0; i < sizeof linetable_cases / sizeof linetable_cases[0]; i++)
        if (strcmp(linetable_cases[i].version, version) == 0 &&
            strcmp(linetable_cases[i].name, name) == 0)
            return &linetable_cases[i];
    fail_msg("no line table case %s %s", version, name);
    return NULL;
}

/* The last position (stepping by `step`) that starts a new line. */
static size_t pos_run_start(const struct linetable_case *tc, size_t step)
{
    size_t best = 0;
    for (size_t p = step; p < tc->npos; p += step)
        if (tc->lines[p] > 0 && tc->lines[p] != tc->lines[p - step])
            best = p;
    if (best == 0)
        fail_msg("%s %s has no line change", tc->version, tc->name);
    return best;
}

/* The first position that ends a run of one line. */
static size_t pos_run_end(const struct linetable_case *tc, size_t step)
{
    for (size_t p = 0; p + step < tc->npos; p += step)
        if (tc->lines[p] > 0 && tc->lines[p] != tc->lines[p + step])
            return p;
    fail_msg("%s %s has no line change", tc->version, tc->name);
    return 0;
}

struct code_spec {
    uint64_t name, qualname, filename;
    const struct linetable_case *tc;
};

static uint64_t make_code(struct image *im, const struct code_spec *s)
{
    const struct py_layout *l = im->l;
    size_t size = l->code_adaptive != PY_OFF_NONE
                      ? (size_t)l->code_adaptive + 2 * s->tc->npos + 16
                      : (size_t)l->code_size + 16;
    uint64_t a = img_alloc(im, size);
    put64(im, a, 0, 1);
    put64(im, a, l->ob_type, im->loc.code_type);
    put64(im, a, l->code_filename, s->filename);
    put64(im, a, l->code_name, s->name);
    if (l->code_qualname != PY_OFF_NONE)
        put64(im, a, l->code_qualname, s->qualname ? s->qualname : s->name);
    put64(im, a, l->code_linetable, make_bytes(im, s->tc->table, s->tc->len));
    put32(im, a, l->code_firstlineno, (uint32_t)s->tc->firstlineno);
    return a;
}

/* 3.11+: a _PyInterpreterFrame at addr (allocated by the caller). */
static void put_iframe(struct image *im, uint64_t f, uint64_t code, uint64_t previous,
                       int64_t pos, uint8_t owner)
{
    const struct py_layout *l = im->l;
    put64(im, f, l->iframe_code, code);
    put64(im, f, l->iframe_previous, previous);
    put64(im, f, l->iframe_instr, code + (uint64_t)l->code_adaptive + (uint64_t)(pos * 2));
    put8(im, f, l->iframe_owner, owner);
}

static size_t iframe_bytes(const struct image *im)
{
    return (size_t)im->l->iframe_size + 2 * 8;   /* two localsplus slots */
}

/* 3.8–3.10: a PyFrameObject. */
static uint64_t make_frame(struct image *im, uint64_t code, uint64_t back, int32_t lasti)
{
    const struct py_layout *l = im->l;
    uint64_t f = img_alloc(im, 160);
    put64(im, f, 0, 1);
    put64(im, f, l->ob_type, im->loc.frame_type);
    put64(im, f, l->frame_back, back);
    put64(im, f, l->frame_code, code);
    put32(im, f, l->frame_lasti, (uint32_t)lasti);
    if (l->frame_executing != PY_OFF_NONE)   /* its eval runs */
        put8(im, f, l->frame_executing, l->minor >= 10 ? 0 : 1);
    return f;
}

static void image_init_version(struct image *im, int major, int minor)
{
    memset(im, 0, sizeof *im);
    im->mem = malloc(IMG_SIZE);
    assert_non_null(im->mem);
    im->l = py_layout_for(major, minor);
    assert_non_null(im->l);
    im->used = 64;   /* nothing lives at the image's first bytes */
    snprintf(im->loc.binary, sizeof im->loc.binary, "/usr/lib/libpython%d.%d.so.1.0", major,
             minor);
    im->loc.version.major = major;
    im->loc.version.minor = minor;
    im->loc.version.micro = 1;
    snprintf(im->loc.version.text, sizeof im->loc.version.text, "%d.%d.1", major, minor);
    /* fake type objects: only their addresses matter */
    im->loc.code_type = img_alloc(im, 64);
    im->loc.unicode_type = img_alloc(im, 64);
    im->loc.bytes_type = img_alloc(im, 64);
    im->loc.frame_type = img_alloc(im, 64);
    if (im->l->runtime_interpreters_head != PY_OFF_NONE) {
        im->loc.runtime_addr = img_alloc(im, 1024);
        im->loc.runtime_size = 1024;
    } else {
        /* 2.7 and 3.6: statics instead of _PyRuntime */
        im->loc.has_symtab = 1;
        im->loc.interp_head = img_alloc(im, 8);
        im->loc.tstate_current = img_alloc(im, 8);
    }
    if (major == 2) {
        /* bytes is str in 2.7 */
        im->loc.string_type = img_alloc(im, 64);
        im->loc.bytes_type = im->loc.string_type;
    }
}

static void image_init(struct image *im, int minor)
{
    image_init_version(im, 3, minor);
}

/* ---- the 3.12 scenario -------------------------------------------------- */

/*
 * interp ── threads.head → tstate[0] ─next→ tstate[1]
 * tstate[0]: cframe → current_frame = f_inner
 *     f_inner (loops, "Outer.loops")  ─previous→ f_shim (C stack, owner 3)
 *     ─→ f_mid ("Outer.λ", file with U+1F600) ─→ f_outer (<module>) ─→ NULL
 *     f_outer, f_mid, f_inner live in one _PyStackChunk; the shim does not.
 * tstate[1]: one frame f2 ("café"), owns the GIL.
 */
struct s312 {
    struct image im;
    uint64_t interp, gil, tstate[2], cframe[2], chunk;
    uint64_t f_inner, f_shim, f_mid, f_outer, f2;
    uint64_t code_loops, code_lambda, code_module, code_cafe;
    uint64_t str_loops_qual, str_other_name;
    const struct linetable_case *tc_loops, *tc_gap, *tc_module, *tc_simple;
    size_t pos_inner, pos_mid, pos_outer, pos2;
    struct py_process *py;
    struct reader *reader;
};

static const char FILE_MOD[] = "/srv/app/mypkg/mod.py";
static const char FILE_EMOJI_UTF8[] = "/srv/app/\xf0\x9f\x98\x80.py";
static const char NAME_LAMBDA_UTF8[] = "Outer.\xce\xbb";
static const char NAME_CAFE_UTF8[] = "caf\xc3\xa9";

static void build_312(struct s312 *s)
{
    struct image *im = &s->im;
    image_init(im, 12);
    const struct py_layout *l = im->l;

    s->tc_loops = find_case("3.12.1", "loops");
    s->tc_gap = find_case("3.12.1", "gap300");
    s->tc_module = find_case("3.12.1", "<module>");
    s->tc_simple = find_case("3.12.1", "simple");
    s->pos_inner = pos_run_start(s->tc_loops, 1);
    s->pos_mid = pos_run_end(s->tc_gap, 1);
    s->pos_outer = pos_run_start(s->tc_module, 1);
    s->pos2 = pos_run_end(s->tc_simple, 1);

    uint64_t file_mod = make_ascii(im, FILE_MOD);
    static const uint32_t emoji_file[] = {'/', 's', 'r', 'v', '/', 'a', 'p', 'p', '/',
                                          0x1F600, '.', 'p', 'y'};
    uint64_t file_emoji = make_compact(im, 4, emoji_file, 13);
    static const uint32_t lambda_qual[] = {'O', 'u', 't', 'e', 'r', '.', 0x3BB};
    static const uint32_t lambda_name[] = {0x3BB};
    static const uint32_t cafe[] = {'c', 'a', 'f', 0xE9};

    s->str_loops_qual = make_ascii(im, "Outer.loops");
    s->str_other_name = make_ascii(im, "Replacement.method");
    struct code_spec loops = {make_ascii(im, "loops"), s->str_loops_qual, file_mod, s->tc_loops};
    struct code_spec lambda = {make_compact(im, 2, lambda_name, 1),
                               make_compact(im, 2, lambda_qual, 7), file_emoji, s->tc_gap};
    struct code_spec module = {make_ascii(im, "<module>"), 0, file_mod, s->tc_module};
    struct code_spec cafe_spec = {make_compact(im, 1, cafe, 4), 0, file_mod, s->tc_simple};
    s->code_loops = make_code(im, &loops);
    s->code_lambda = make_code(im, &lambda);
    s->code_module = make_code(im, &module);
    s->code_cafe = make_code(im, &cafe_spec);

    /* thread 0's frames: outer, mid, inner, upwards in one chunk */
    size_t fb = iframe_bytes(im);
    size_t chunk_size = (size_t)l->chunk_data + 8 * fb;
    s->chunk = img_alloc(im, chunk_size);
    put64(im, s->chunk, l->chunk_previous, 0);
    put64(im, s->chunk, l->chunk_size, chunk_size);
    put64(im, s->chunk, l->chunk_top, 3 * fb / 8);
    uint64_t data = s->chunk + (uint64_t)l->chunk_data;
    s->f_outer = data;
    s->f_mid = data + fb;
    s->f_inner = data + 2 * fb;
    s->f_shim = img_alloc(im, fb);
    put_iframe(im, s->f_outer, s->code_module, 0, (int64_t)s->pos_outer, OWNED_BY_THREAD);
    put_iframe(im, s->f_mid, s->code_lambda, s->f_outer, (int64_t)s->pos_mid, OWNED_BY_THREAD);
    /* the shim's code is never looked at */
    put64(im, s->f_shim, l->iframe_code, 0xdead0000ull);
    put64(im, s->f_shim, l->iframe_previous, s->f_mid);
    put8(im, s->f_shim, l->iframe_owner, OWNED_BY_CSTACK);
    put_iframe(im, s->f_inner, s->code_loops, s->f_shim, (int64_t)s->pos_inner,
               OWNED_BY_THREAD);

    s->f2 = img_alloc(im, fb);
    put_iframe(im, s->f2, s->code_cafe, 0, (int64_t)s->pos2, OWNED_BY_THREAD);

    for (int i = 0; i < 2; i++) {
        s->tstate[i] = img_alloc(im, 512);
        s->cframe[i] = img_alloc(im, 64);
        put64(im, s->tstate[i], l->tstate_interp, 0);   /* set below */
        put64(im, s->tstate[i], l->tstate_frame, s->cframe[i]);
        put64(im, s->tstate[i], l->tstate_thread_id, 0x7f0000001000ull + (uint64_t)i * 0x1000);
        put64(im, s->tstate[i], l->tstate_native_thread_id, 4242 + (uint64_t)i);
    }
    put64(im, s->cframe[0], l->cframe_current_frame, s->f_inner);
    put64(im, s->cframe[1], l->cframe_current_frame, s->f2);
    put64(im, s->tstate[0], l->tstate_datastack_chunk, s->chunk);
    put64(im, s->tstate[0], l->tstate_datastack_top, s->f_inner + fb);
    put64(im, s->tstate[0], l->tstate_next, s->tstate[1]);
    put64(im, s->tstate[1], l->tstate_prev, s->tstate[0]);

    s->interp = img_alloc(im, 512);
    s->gil = img_alloc(im, 64);
    put64(im, s->interp, l->interp_next, 0);
    put64(im, s->interp, l->interp_threads_head, s->tstate[0]);
    put64(im, s->interp, l->interp_gil_ptr, s->gil);
    put32(im, s->gil, l->gil_locked, 1);
    put64(im, s->gil, l->gil_last_holder, s->tstate[1]);
    for (int i = 0; i < 2; i++)
        put64(im, s->tstate[i], l->tstate_interp, s->interp);
    put64(im, im->loc.runtime_addr, l->runtime_interpreters_head, s->interp);
}

static void open_model(struct image *im, struct py_process **py, struct reader **reader)
{
    *reader = reader_buffer_new(im->mem, IMG_SIZE, IMG_BASE);
    assert_non_null(*reader);
    struct pm_error err = {0};
    if (py_open_reader(*reader, im->l, &im->loc, py, &err) != 0)
        fail_msg("py_open_reader: %s", err.msg);
}

static int setup_312(void **state)
{
    struct s312 *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    *state = s;
    build_312(s);
    open_model(&s->im, &s->py, &s->reader);
    return 0;
}

static int teardown_312(void **state)
{
    struct s312 *s = *state;
    py_detach(s->py);
    free(s->im.mem);
    free(s);
    return 0;
}

/* The line the interpreter gives for `pos` of case tc. */
static int line_at(const struct linetable_case *tc, size_t pos)
{
    assert_true(pos < tc->npos);
    return tc->lines[pos];
}

static void expect_frame(const struct py_frame *f, uint64_t code, const char *name,
                         const char *file, int firstlineno, int line)
{
    assert_non_null(f->code);
    assert_int_equal(f->code->addr, code);
    assert_string_equal(f->code->name, name);
    assert_string_equal(f->code->filename, file);
    assert_int_equal(f->code->firstlineno, firstlineno);
    assert_int_equal(f->line, line);
}

/* List the threads (expecting `n`) into out. */
static void list_threads(struct py_process *py, struct py_thread *out, size_t n)
{
    size_t count = 99;
    struct pm_error err = {0};
    py_begin_sample(py);
    if (py_list_threads(py, out, n, &count, &err) != 0)
        fail_msg("py_list_threads: %s", err.msg);
    assert_int_equal(count, n);
}

/* Walk thread t; returns py_thread_stack's result. */
static int walk(struct py_process *py, const struct py_thread *t, struct py_frame *frames,
                size_t cap, size_t *depth, struct pm_error *err)
{
    memset(err, 0, sizeof *err);
    *depth = 12345;
    return py_thread_stack(py, t, frames, cap, depth, err);
}

static void expect_walk_fails(struct py_process *py, const struct py_thread *t,
                              enum pm_errcode code, const char *what)
{
    struct py_frame frames[64];
    size_t depth;
    struct pm_error err;
    int rc = walk(py, t, frames, 64, &depth, &err);
    if (rc != -1 || err.code != code)
        fail_msg("%s: rc %d, code %d (\"%s\"), expected code %d", what, rc, (int)err.code,
                 err.msg, (int)code);
    if (err.msg[0] == '\0')
        fail_msg("%s: no message", what);
}

/* Walk thread t, which must succeed with want frames. */
static void expect_walk_depth(struct py_process *py, const struct py_thread *t, size_t want)
{
    struct py_frame frames[64];
    size_t depth;
    struct pm_error err;
    int rc = walk(py, t, frames, 64, &depth, &err);
    if (rc != 0)
        fail_msg("walk: rc %d (\"%s\")", rc, err.msg);
    assert_int_equal(depth, want);
}

/* ---- 3.12: the intact image --------------------------------------------- */

static void test_312_threads(void **state)
{
    struct s312 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(t[i].tstate, s->tstate[i]);
        assert_int_equal(t[i].interp, s->interp);
        assert_int_equal(t[i].thread_id, 0x7f0000001000ull + (uint64_t)i * 0x1000);
        assert_int_equal(t[i].os_tid, 4242 + i);
    }
    assert_int_equal(t[0].top_frame, s->f_inner);
    assert_int_equal(t[1].top_frame, s->f2);
    assert_int_equal(t[0].owns_gil, 0);
    assert_int_equal(t[1].owns_gil, 1);
    assert_int_equal(t[0].chunk, s->chunk);
    assert_int_equal(t[1].chunk, 0);

    /* fewer slots than threads: the count is still 2, only one filled */
    struct py_thread one[2];
    memset(one, 0x77, sizeof one);
    size_t count = 0;
    struct pm_error err = {0};
    assert_int_equal(py_list_threads(s->py, one, 1, &count, &err), 0);
    assert_int_equal(count, 2);
    assert_int_equal(one[0].tstate, s->tstate[0]);
    assert_int_equal(one[1].tstate, 0x7777777777777777ull);
    assert_int_equal(py_list_threads(s->py, NULL, 0, &count, &err), 0);
    assert_int_equal(count, 2);

    /* the GIL released: nobody owns it */
    put32(&s->im, s->gil, s->im.l->gil_locked, 0);
    list_threads(s->py, t, 2);
    assert_int_equal(t[0].owns_gil + t[1].owns_gil, 0);
}

static void test_312_stack(void **state)
{
    struct s312 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    struct py_frame frames[16];
    size_t depth;
    struct pm_error err;
    if (walk(s->py, &t[0], frames, 16, &depth, &err) != 0)
        fail_msg("walk: %s", err.msg);
    /* innermost first; the shim frame is not a Python frame */
    assert_int_equal(depth, 3);
    expect_frame(&frames[0], s->code_loops, "Outer.loops", FILE_MOD, 17,
                 line_at(s->tc_loops, s->pos_inner));
    expect_frame(&frames[1], s->code_lambda, NAME_LAMBDA_UTF8, FILE_EMOJI_UTF8, 666,
                 line_at(s->tc_gap, s->pos_mid));
    expect_frame(&frames[2], s->code_module, "<module>", FILE_MOD, 1,
                 line_at(s->tc_module, s->pos_outer));
    /* the chosen positions are line boundaries: one unit off would differ */
    assert_int_not_equal(line_at(s->tc_loops, s->pos_inner),
                         line_at(s->tc_loops, s->pos_inner - 1));
    assert_int_not_equal(line_at(s->tc_gap, s->pos_mid), line_at(s->tc_gap, s->pos_mid + 1));

    assert_int_equal(walk(s->py, &t[1], frames, 16, &depth, &err), 0);
    assert_int_equal(depth, 1);
    expect_frame(&frames[0], s->code_cafe, NAME_CAFE_UTF8, FILE_MOD, 1,
                 line_at(s->tc_simple, s->pos2));
}

/* Every position of a real table through the walker gives the interpreter's line. */
static void test_312_every_position(void **state)
{
    struct s312 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    const struct linetable_case *tc = s->tc_loops;
    for (size_t pos = 0; pos < tc->npos; pos++) {
        put_iframe(&s->im, s->f_inner, s->code_loops, s->f_shim, (int64_t)pos, OWNED_BY_THREAD);
        py_begin_sample(s->py);
        struct py_frame frames[4];
        size_t depth;
        struct pm_error err;
        assert_int_equal(walk(s->py, &t[0], frames, 4, &depth, &err), 0);
        if (frames[0].line != tc->lines[pos])
            fail_msg("pos %zu: line %d, the interpreter says %d", pos, frames[0].line,
                     tc->lines[pos]);
    }
}

/* The same answers whether the frames come from the chunk copy or not. */
static void test_312_chunk_or_not(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_frame want[16], got[16];
    size_t want_depth, depth;
    struct pm_error err;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], want, 16, &want_depth, &err), 0);
    assert_int_equal(want_depth, 3);
    /* keep copies: the entries die with the model */
    char want_names[3][64];
    int want_lines[3];
    for (size_t f = 0; f < 3; f++) {
        snprintf(want_names[f], sizeof want_names[f], "%s", want[f].code->name);
        want_lines[f] = want[f].line;
    }

    /* a corrupt chunk header is ignored: frames are read one by one */
    static const struct {
        const char *what;
        int64_t field;
        uint64_t value;
    } corrupt[] = {
        {"top beyond size", 0, 1ull << 60},
        {"size absurd", 1, 1ull << 40},
        {"size below the header", 1, 8},
        {"no chunk", 2, 0},
        {"chunk outside the image", 2, 0xdead000000ull},
        {"chunk at the image's end", 2, IMG_BASE + IMG_SIZE - 8},
    };
    for (size_t i = 0; i < sizeof corrupt / sizeof corrupt[0]; i++) {
        /* a fresh image and model: nothing cached from the walk before */
        py_detach(s->py);
        free(s->im.mem);
        build_312(s);
        open_model(&s->im, &s->py, &s->reader);
        if (corrupt[i].field == 0)
            put64(&s->im, s->chunk, l->chunk_top, corrupt[i].value);
        else if (corrupt[i].field == 1)
            put64(&s->im, s->chunk, l->chunk_size, corrupt[i].value);
        else
            put64(&s->im, s->tstate[0], l->tstate_datastack_chunk, corrupt[i].value);
        list_threads(s->py, t, 2);
        if (walk(s->py, &t[0], got, 16, &depth, &err) != 0)
            fail_msg("%s: %s", corrupt[i].what, err.msg);
        assert_int_equal(depth, want_depth);
        for (size_t f = 0; f < depth; f++) {
            assert_string_equal(got[f].code->name, want_names[f]);
            assert_int_equal(got[f].line, want_lines[f]);
        }
    }
}

/* 3.12 frames not started yet: prev_instr one unit before the code. */
static void test_312_frame_not_started(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    put64(&s->im, s->f_inner, l->iframe_instr, s->code_loops + (uint64_t)l->code_adaptive - 2);
    put64(&s->im, s->f2, l->iframe_instr, 0);   /* far before the code */
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    struct py_frame frames[16];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk(s->py, &t[0], frames, 16, &depth, &err), 0);
    assert_int_equal(depth, 3);
    assert_int_equal(frames[0].line, 17);
    assert_int_equal(walk(s->py, &t[1], frames, 16, &depth, &err), 0);
    assert_int_equal(frames[0].line, 1);
}

static void test_312_accessors(void **state)
{
    struct s312 *s = *state;
    assert_int_equal(py_pid(s->py), 0);
    assert_string_equal(py_get_version(s->py)->text, "3.12.1");
    assert_string_equal(py_binary(s->py), "/usr/lib/libpython3.12.so.1.0");
    assert_ptr_equal(py_reader(s->py), s->reader);
}

/* ---- 3.12: broken images ------------------------------------------------ */

static void test_312_frame_loop(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    /* outer → inner: inner → shim → mid → outer → inner ... */
    put64(&s->im, s->f_outer, l->iframe_previous, s->f_inner);
    list_threads(s->py, t, 2);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "A -> B -> C -> A");
    /* a frame that is its own parent */
    put64(&s->im, s->f2, l->iframe_previous, s->f2);
    expect_walk_fails(s->py, &t[1], PM_ETORN, "A -> A");
    /* A -> B -> A with B a shim frame (skipped frames count too) */
    put64(&s->im, s->f_shim, l->iframe_previous, s->f_inner);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "A -> shim -> A");
    /* a loop deeper than the cap still fails rather than truncating */
    struct py_frame frames[1];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk(s->py, &t[0], frames, 1, &depth, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
}

static void test_312_non_code_object(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    /* the middle frame's code is a str */
    put64(&s->im, s->f_mid, l->iframe_code, s->str_loops_qual);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "code pointer to a str");
    /* the code pointer is in the image but at nothing (ob_type 0) */
    put64(&s->im, s->f_mid, l->iframe_code, s->code_lambda + 8);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "code pointer into a code object");
    /* a code object whose type is right but whose name is not a str */
    put64(&s->im, s->f_mid, l->iframe_code, s->code_lambda);
    put64(&s->im, s->code_lambda, l->code_qualname, s->code_module);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "co_qualname pointing at a code object");
    /* ... or whose line table is not bytes */
    put64(&s->im, s->code_cafe, l->code_linetable, s->str_loops_qual);
    expect_walk_fails(s->py, &t[1], PM_ETORN, "co_linetable pointing at a str");
}

static void test_312_pointers_outside(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    put64(&s->im, s->f_mid, l->iframe_previous, 0xdead00000000ull);
    expect_walk_fails(s->py, &t[0], PM_EREAD, "previous frame outside the image");
    put64(&s->im, s->f_mid, l->iframe_previous, IMG_BASE + IMG_SIZE - 4);
    expect_walk_fails(s->py, &t[0], PM_EREAD, "previous frame straddling the image's end");
    put64(&s->im, s->f_mid, l->iframe_previous, s->f_outer);
    put64(&s->im, s->f_outer, l->iframe_code, IMG_BASE - 64);
    expect_walk_fails(s->py, &t[0], PM_EREAD, "code object below the image");
    put64(&s->im, s->f_outer, l->iframe_code, s->code_module);
    put64(&s->im, s->code_module, l->code_filename, 0xdead0000000ull);
    expect_walk_fails(s->py, &t[0], PM_EREAD, "co_filename outside the image");

    /* the top frame itself */
    struct py_thread bad = t[1];
    bad.top_frame = 0x10;
    expect_walk_fails(s->py, &bad, PM_EREAD, "top frame at 0x10");
    /* a cframe pointer outside: listing the threads fails */
    put64(&s->im, s->tstate[1], l->tstate_frame, 0xdead0000ull);
    size_t count;
    struct pm_error err = {0};
    struct py_thread t2[2];
    assert_int_equal(py_list_threads(s->py, t2, 2, &count, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    /* a thread state outside */
    put64(&s->im, s->tstate[0], l->tstate_next, 0xdead0000ull);
    assert_int_equal(py_list_threads(s->py, t2, 2, &count, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
}

static void test_312_thread_list_loops(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    size_t count;
    struct pm_error err = {0};
    struct py_thread t[8];
    put64(&s->im, s->tstate[1], l->tstate_next, s->tstate[0]);
    assert_int_equal(py_list_threads(s->py, t, 8, &count, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
    put64(&s->im, s->tstate[1], l->tstate_next, s->tstate[1]);
    assert_int_equal(py_list_threads(s->py, t, 8, &count, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
    /* the interpreter list loops */
    put64(&s->im, s->tstate[1], l->tstate_next, 0);
    put64(&s->im, s->interp, l->interp_next, s->interp);
    memset(&err, 0, sizeof err);
    assert_int_equal(py_list_threads(s->py, t, 8, &count, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
}

static void test_312_cap(void **state)
{
    struct s312 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    struct py_frame frames[4];
    size_t depth;
    struct pm_error err;
    /* deeper than cap: 1, the innermost cap frames */
    memset(frames, 0, sizeof frames);
    assert_int_equal(walk(s->py, &t[0], frames, 2, &depth, &err), 1);
    assert_int_equal(depth, 2);
    assert_int_equal(frames[0].code->addr, s->code_loops);
    assert_int_equal(frames[1].code->addr, s->code_lambda);
    assert_null(frames[2].code);
    assert_int_equal(walk(s->py, &t[0], frames, 1, &depth, &err), 1);
    assert_int_equal(depth, 1);
    assert_int_equal(frames[0].code->addr, s->code_loops);
    assert_int_equal(walk(s->py, &t[0], frames, 0, &depth, &err), 1);
    assert_int_equal(depth, 0);
    /* exactly cap (the shim does not count): 0 */
    assert_int_equal(walk(s->py, &t[0], frames, 3, &depth, &err), 0);
    assert_int_equal(depth, 3);
    assert_int_equal(walk(s->py, &t[1], frames, 1, &depth, &err), 0);
    assert_int_equal(depth, 1);
}

/* A long chain of real frames (3000) outside any chunk. */
static void test_312_deep_stack(void **state)
{
    struct s312 *s = *state;
    struct image *im = &s->im;
    enum { N = 3000 };
    uint64_t below = 0;
    for (int i = 0; i < N; i++) {
        uint64_t f = img_alloc(im, iframe_bytes(im));
        /* alternate two codes so the cache is exercised */
        put_iframe(im, f, i % 2 ? s->code_loops : s->code_module, below,
                   i % 2 ? (int64_t)s->pos_inner : (int64_t)s->pos_outer, OWNED_BY_THREAD);
        below = f;
    }
    put64(im, s->cframe[1], im->l->cframe_current_frame, below);
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    static struct py_frame frames[N + 1];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk(s->py, &t[1], frames, 128, &depth, &err), 1);
    assert_int_equal(depth, 128);
    assert_int_equal(walk(s->py, &t[1], frames, N + 1, &depth, &err), 0);
    assert_int_equal(depth, N);
    for (int i = 0; i < N; i++) {
        int innermost_index = N - 1 - i;   /* frame i from the top was made at N-1-i */
        int odd = innermost_index % 2;
        assert_int_equal(frames[i].code->addr, odd ? s->code_loops : s->code_module);
        assert_int_equal(frames[i].line, odd ? line_at(s->tc_loops, s->pos_inner)
                                             : line_at(s->tc_module, s->pos_outer));
    }
    struct py_stats st = py_get_stats(s->py);
    assert_int_equal(st.code_misses, 2);
}

/* Stacks and lists that are empty are not errors. */
static void test_312_empty(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    /* a thread with no Python frame */
    put64(&s->im, s->cframe[1], l->cframe_current_frame, 0);
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    assert_int_equal(t[1].top_frame, 0);
    struct py_frame frames[4];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk(s->py, &t[1], frames, 4, &depth, &err), 0);
    assert_int_equal(depth, 0);
    /* a thread with no cframe at all */
    put64(&s->im, s->tstate[1], l->tstate_frame, 0);
    list_threads(s->py, t, 2);
    assert_int_equal(t[1].top_frame, 0);
    /* only shim frames */
    uint64_t shim = img_alloc(&s->im, iframe_bytes(&s->im));
    put8(&s->im, shim, l->iframe_owner, OWNED_BY_CSTACK);
    put64(&s->im, shim, l->iframe_previous, s->f_shim);
    put64(&s->im, s->f_shim, l->iframe_previous, 0);
    put64(&s->im, s->cframe[0], l->cframe_current_frame, shim);
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 4, &depth, &err), 0);
    assert_int_equal(depth, 0);
    /* an interpreter not initialised yet */
    put64(&s->im, s->im.loc.runtime_addr, l->runtime_interpreters_head, 0);
    size_t count = 99;
    assert_int_equal(py_list_threads(s->py, t, 2, &count, &err), 0);
    assert_int_equal(count, 0);
}

/* Two interpreters, three threads. */
static void test_312_two_interpreters(void **state)
{
    struct s312 *s = *state;
    struct image *im = &s->im;
    const struct py_layout *l = im->l;
    uint64_t interp2 = img_alloc(im, 512);
    uint64_t ts = img_alloc(im, 512);
    put64(im, ts, l->tstate_thread_id, 0xabcdef);
    put64(im, ts, l->tstate_native_thread_id, 5555);
    put64(im, ts, l->tstate_interp, interp2);
    put64(im, interp2, l->interp_threads_head, ts);
    put64(im, s->interp, l->interp_next, interp2);
    struct py_thread t[3];
    list_threads(s->py, t, 3);
    assert_int_equal(t[0].interp, s->interp);
    assert_int_equal(t[1].interp, s->interp);
    assert_int_equal(t[2].interp, interp2);
    assert_int_equal(t[2].tstate, ts);
    assert_int_equal(t[2].thread_id, 0xabcdef);
    assert_int_equal(t[2].os_tid, 5555);
    assert_int_equal(t[2].top_frame, 0);
    assert_int_equal(t[2].owns_gil, 0);   /* interp2 has no GIL pointer */
    assert_int_equal(t[1].owns_gil, 1);
}

static void test_312_refresh(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    struct pm_error err = {0};
    /* the thread moved to its middle frame */
    put64(&s->im, s->cframe[0], l->cframe_current_frame, s->f_mid);
    assert_int_equal(py_thread_refresh(s->py, &t[0], &err), 0);
    assert_int_equal(t[0].top_frame, s->f_mid);
    struct py_frame frames[8];
    size_t depth;
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
    assert_int_equal(depth, 2);
    assert_int_equal(frames[0].code->addr, s->code_lambda);
    /* the thread state now belongs to another thread */
    put64(&s->im, s->tstate[0], l->tstate_thread_id, 0x5eed);
    memset(&err, 0, sizeof err);
    assert_int_equal(py_thread_refresh(s->py, &t[0], &err), -1);
    assert_int_equal(err.code, PM_ETORN);
}

/* ---- strings ------------------------------------------------------------ */

/* Point the inner frame's qualname at str and walk thread 0. */
static int walk_with_name(struct s312 *s, uint64_t str, struct py_frame *frames, size_t *depth,
                          struct pm_error *err)
{
    put64(&s->im, s->code_loops, s->im.l->code_qualname, str);
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    return walk(s->py, &t[0], frames, 8, depth, err);
}

static void expect_bad_name(struct s312 *s, uint64_t str, const char *what)
{
    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;
    int rc = walk_with_name(s, str, frames, &depth, &err);
    if (rc != -1 || err.code != PM_ETORN)
        fail_msg("%s: rc %d, code %d, name \"%s\"", what, rc, (int)err.code,
                 rc >= 0 && depth > 0 ? frames[0].code->name : "");
}

static void test_str_bad_kind(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    uint64_t str = make_ascii(&s->im, "perfectly_fine");
    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk_with_name(s, str, frames, &depth, &err), 0);
    assert_string_equal(frames[0].code->name, "perfectly_fine");

    static const uint32_t bad_states[] = {
        STATE_KIND(0) | STATE_COMPACT,
        STATE_KIND(3) | STATE_COMPACT,
        STATE_KIND(5) | STATE_COMPACT,
        STATE_KIND(7) | STATE_COMPACT | STATE_ASCII,
        STATE_KIND(2) | STATE_COMPACT | STATE_ASCII,   /* ASCII is always 1 byte */
        STATE_KIND(4) | STATE_COMPACT | STATE_ASCII,
    };
    for (size_t i = 0; i < sizeof bad_states / sizeof bad_states[0]; i++) {
        char what[64];
        str = make_ascii(&s->im, "garbage_kind");
        put32(&s->im, str, l->unicode_state, bad_states[i]);
        snprintf(what, sizeof what, "state 0x%x", bad_states[i]);
        expect_bad_name(s, str, what);
    }
}

static void test_str_bad_length(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    static const int64_t lengths[] = {-1, INT64_MIN, INT64_MAX, (int64_t)1 << 50};
    size_t accepted = 0;
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        /* readable, non-NUL bytes after the header: nothing stops a reader
         * that believes the length but the length itself */
        uint64_t str = make_ascii(&s->im, "short");
        img_alloc(&s->im, 8192);
        memset(at(&s->im, str + (uint64_t)l->unicode_ascii_size + 5, 4096), 'G', 4096);
        put64(&s->im, str, l->unicode_length, (uint64_t)lengths[i]);
        put64(&s->im, s->code_loops, l->code_qualname, str);
        struct py_thread t[2];
        list_threads(s->py, t, 2);
        struct py_frame frames[8];
        size_t depth;
        struct pm_error err;
        int rc = walk(s->py, &t[0], frames, 8, &depth, &err);
        if (rc != -1 || err.code != PM_ETORN) {
            print_error("length %lld: rc %d, code %d, name of %zu bytes \"%.12s...\"\n",
                        (long long)lengths[i], rc, (int)err.code,
                        rc >= 0 ? strlen(frames[0].code->name) : 0,
                        rc >= 0 ? frames[0].code->name : "");
            accepted++;
        }
    }
    if (accepted)
        fail_msg("%zu impossible str lengths were accepted (listed above)", accepted);
}

/* A long but possible name is truncated, not refused. */
static void test_str_long_name_truncated(void **state)
{
    struct s312 *s = *state;
    char *long_name = malloc(5001);
    assert_non_null(long_name);
    memset(long_name, 'n', 5000);
    long_name[5000] = '\0';
    uint64_t str = make_ascii(&s->im, long_name);
    free(long_name);
    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk_with_name(s, str, frames, &depth, &err), 0);
    size_t n = strlen(frames[0].code->name);
    assert_true(n >= 255 && n < 5000);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(frames[0].code->name[i], 'n');
}

/* A legacy (not compact) str: the header points to its data. */
static void test_str_legacy(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    uint64_t str = img_alloc(&s->im, (size_t)l->unicode_legacy_data + 8);
    uint64_t data = img_alloc(&s->im, 16);
    static const uint16_t chars[] = {'l', 'e', 'g', 0x3A9, 0};   /* "legΩ", UCS2 */
    memcpy(at(&s->im, data, sizeof chars), chars, sizeof chars);
    put64(&s->im, str, l->ob_type, s->im.loc.unicode_type);
    put64(&s->im, str, l->unicode_length, 4);
    put32(&s->im, str, l->unicode_state, STATE_KIND(2));
    put64(&s->im, str, l->unicode_legacy_data, data);
    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;
    if (walk_with_name(s, str, frames, &depth, &err) != 0)
        fail_msg("legacy str: %s", err.msg);
    assert_string_equal(frames[0].code->name, "leg\xce\xa9");
    /* its data pointer outside the image */
    uint64_t str2 = img_alloc(&s->im, (size_t)l->unicode_legacy_data + 8);
    memcpy(at(&s->im, str2, (size_t)l->unicode_legacy_data + 8), at(&s->im, str, 1),
           (size_t)l->unicode_legacy_data + 8);
    put64(&s->im, str2, l->unicode_legacy_data, 0xdead0000ull);
    assert_int_equal(walk_with_name(s, str2, frames, &depth, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
}

/* ---- the code cache ----------------------------------------------------- */

static void test_code_cache_notices_replacement(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;

    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
    const struct py_code *first = frames[0].code;
    assert_string_equal(first->name, "Outer.loops");
    struct py_stats st = py_get_stats(s->py);
    assert_int_equal(st.code_misses, 3);
    assert_int_equal(st.code_hits, 0);

    /* unchanged: served from the cache, same entry */
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
    assert_ptr_equal(frames[0].code, first);
    st = py_get_stats(s->py);
    assert_int_equal(st.code_misses, 3);
    assert_int_equal(st.code_hits, 3);

    /* another code object at the same address: a new name pointer */
    put64(&s->im, s->code_loops, l->code_qualname, s->str_other_name);
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
    assert_string_equal(frames[0].code->name, "Replacement.method");
    assert_int_equal(frames[0].code->addr, s->code_loops);
    st = py_get_stats(s->py);
    assert_int_equal(st.code_misses, 4);

    /* same names, another first line */
    put32(&s->im, s->code_loops, l->code_firstlineno, 4000);
    uint64_t instr_before = 0;
    memcpy(&instr_before, at(&s->im, s->f_inner + (uint64_t)l->iframe_instr, 8), 8);
    put64(&s->im, s->f_inner, l->iframe_instr, s->code_loops + (uint64_t)l->code_adaptive - 2);
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
    assert_int_equal(frames[0].code->firstlineno, 4000);
    assert_int_equal(frames[0].line, 4000);

    /* another file */
    put64(&s->im, s->code_loops, l->code_filename, make_ascii(&s->im, "/elsewhere/other.py"));
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
    assert_string_equal(frames[0].code->filename, "/elsewhere/other.py");

    /* another line table: the same position gives the new table's line */
    const struct linetable_case *simple = s->tc_simple;
    put64(&s->im, s->code_loops, l->code_linetable,
          make_bytes(&s->im, simple->table, simple->len));
    put32(&s->im, s->code_loops, l->code_firstlineno, (uint32_t)simple->firstlineno);
    put64(&s->im, s->f_inner, l->iframe_instr,
          s->code_loops + (uint64_t)l->code_adaptive + 2 * s->pos2);
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
    assert_int_equal(frames[0].line, line_at(simple, s->pos2));
    assert_int_equal(frames[0].code->firstlineno, 1);
}

/* ---- opening ------------------------------------------------------------ */

static void test_open_rejects_absurd_layout(void **state)
{
    (void)state;
    static uint8_t buf[64];
    struct py_layout bad = *py_layout_for(3, 12);
    bad.tstate_thread_id = 100000;
    struct py_location loc = {0};
    loc.runtime_addr = IMG_BASE;
    snprintf(loc.version.text, sizeof loc.version.text, "3.12.1");
    struct reader *r = reader_buffer_new(buf, sizeof buf, IMG_BASE);
    struct py_process *py = NULL;
    struct pm_error err = {0};
    /* the reader is owned (and freed) even on failure: LeakSanitizer checks */
    assert_int_equal(py_open_reader(r, &bad, &loc, &py, &err), -1);
    assert_int_equal(err.code, PM_EUNSUPPORTED);
    assert_null(py);
}

/* ---- 3.10: PyFrameObject chains ----------------------------------------- */

struct s310 {
    struct image im;
    uint64_t interp, tstate[2], f_inner, f_outer, f2;
    uint64_t code_loops, code_module, code_handlers;
    const struct linetable_case *tc_loops, *tc_module, *tc_handlers;
    int32_t lasti_inner, lasti_outer, lasti2;
    struct py_process *py;
    struct reader *reader;
};

static int setup_310(void **state)
{
    struct s310 *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    *state = s;
    struct image *im = &s->im;
    image_init(im, 10);
    const struct py_layout *l = im->l;
    assert_int_equal(l->frames, PY_FRAMES_OBJECT);
    assert_int_equal(l->code_qualname, PY_OFF_NONE);

    s->tc_loops = find_case("3.10.13", "loops");
    s->tc_module = find_case("3.10.13", "<module>");
    s->tc_handlers = find_case("3.10.13", "handlers");
    /* 3.10's f_lasti counts code units, its table positions are bytes */
    s->lasti_inner = (int32_t)(pos_run_start(s->tc_loops, 2) / 2);
    s->lasti_outer = (int32_t)(pos_run_end(s->tc_module, 2) / 2);
    s->lasti2 = (int32_t)(pos_run_start(s->tc_handlers, 2) / 2);

    uint64_t file = make_ascii(im, FILE_MOD);
    struct code_spec loops = {make_ascii(im, "loops"), 0, file, s->tc_loops};
    struct code_spec module = {make_ascii(im, "<module>"), 0, file, s->tc_module};
    static const uint32_t handlers_name[] = {'h', 0x3BB};
    struct code_spec handlers = {make_compact(im, 2, handlers_name, 2), 0, file,
                                 s->tc_handlers};
    s->code_loops = make_code(im, &loops);
    s->code_module = make_code(im, &module);
    s->code_handlers = make_code(im, &handlers);

    s->f_outer = make_frame(im, s->code_module, 0, s->lasti_outer);
    s->f_inner = make_frame(im, s->code_loops, s->f_outer, s->lasti_inner);
    s->f2 = make_frame(im, s->code_handlers, 0, s->lasti2);

    s->interp = img_alloc(im, 512);
    for (int i = 0; i < 2; i++) {
        s->tstate[i] = img_alloc(im, 512);
        put64(im, s->tstate[i], l->tstate_interp, s->interp);
        put64(im, s->tstate[i], l->tstate_thread_id, 0x7e0000000000ull + (uint64_t)i);
    }
    put64(im, s->tstate[0], l->tstate_frame, s->f_inner);
    put64(im, s->tstate[1], l->tstate_frame, s->f2);
    put64(im, s->tstate[0], l->tstate_next, s->tstate[1]);
    put64(im, s->interp, l->interp_threads_head, s->tstate[0]);
    uint64_t rt = im->loc.runtime_addr;
    put64(im, rt, l->runtime_interpreters_head, s->interp);
    /* 3.10 keeps the GIL in _PyRuntime */
    put32(im, rt, l->runtime_gil_locked, 1);
    put64(im, rt, l->runtime_gil_last_holder, s->tstate[0]);
    open_model(im, &s->py, &s->reader);
    return 0;
}

static int teardown_310(void **state)
{
    struct s310 *s = *state;
    py_detach(s->py);
    free(s->im.mem);
    free(s);
    return 0;
}

static void test_310_threads_and_stacks(void **state)
{
    struct s310 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    assert_int_equal(t[0].tstate, s->tstate[0]);
    assert_int_equal(t[1].tstate, s->tstate[1]);
    assert_int_equal(t[0].thread_id, 0x7e0000000000ull);
    assert_int_equal(t[1].thread_id, 0x7e0000000001ull);
    assert_int_equal(t[0].os_tid, 0);   /* no native id in 3.10 and no pid to ask */
    assert_int_equal(t[0].owns_gil, 1);
    assert_int_equal(t[1].owns_gil, 0);
    assert_int_equal(t[0].top_frame, s->f_inner);
    assert_int_equal(t[0].chunk, 0);

    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;
    if (walk(s->py, &t[0], frames, 8, &depth, &err) != 0)
        fail_msg("walk: %s", err.msg);
    assert_int_equal(depth, 2);
    /* 3.10 has no co_qualname: co_name */
    expect_frame(&frames[0], s->code_loops, "loops", FILE_MOD, 17,
                 line_at(s->tc_loops, (size_t)s->lasti_inner * 2));
    expect_frame(&frames[1], s->code_module, "<module>", FILE_MOD, 1,
                 line_at(s->tc_module, (size_t)s->lasti_outer * 2));
    /* an off-by-one instruction would give another line */
    assert_int_not_equal(line_at(s->tc_loops, (size_t)s->lasti_inner * 2),
                         line_at(s->tc_loops, (size_t)s->lasti_inner * 2 - 2));
    assert_int_not_equal(line_at(s->tc_module, (size_t)s->lasti_outer * 2),
                         line_at(s->tc_module, (size_t)s->lasti_outer * 2 + 2));

    assert_int_equal(walk(s->py, &t[1], frames, 8, &depth, &err), 0);
    assert_int_equal(depth, 1);
    expect_frame(&frames[0], s->code_handlers, "h\xce\xbb", FILE_MOD, 2156,
                 line_at(s->tc_handlers, (size_t)s->lasti2 * 2));

    /* the GIL released */
    put32(&s->im, s->im.loc.runtime_addr, s->im.l->runtime_gil_locked, 0);
    list_threads(s->py, t, 2);
    assert_int_equal(t[0].owns_gil, 0);
}

static void test_310_every_position(void **state)
{
    struct s310 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    const struct linetable_case *tc = s->tc_handlers;
    for (size_t lasti = 0; lasti * 2 < tc->npos; lasti++) {
        put32(&s->im, s->f2, s->im.l->frame_lasti, (uint32_t)lasti);
        py_begin_sample(s->py);
        struct py_frame frames[2];
        size_t depth;
        struct pm_error err;
        assert_int_equal(walk(s->py, &t[1], frames, 2, &depth, &err), 0);
        if (frames[0].line != tc->lines[lasti * 2])
            fail_msg("f_lasti %zu: line %d, the interpreter says %d", lasti, frames[0].line,
                     tc->lines[lasti * 2]);
    }
    /* not started: f_lasti -1 gives the first line */
    put32(&s->im, s->f2, s->im.l->frame_lasti, (uint32_t)-1);
    struct py_frame frames[2];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk(s->py, &t[1], frames, 2, &depth, &err), 0);
    assert_int_equal(frames[0].line, 2156);
}

/* 3.10 names frames by co_name: a new co_name pointer is a new code object. */
static void test_310_code_cache(void **state)
{
    struct s310 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    struct py_frame frames[4];
    size_t depth;
    struct pm_error err;
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 4, &depth, &err), 0);
    assert_string_equal(frames[0].code->name, "loops");
    put64(&s->im, s->code_loops, l->code_name, make_ascii(&s->im, "renamed"));
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[0], frames, 4, &depth, &err), 0);
    assert_string_equal(frames[0].code->name, "renamed");
    assert_int_equal(frames[0].code->addr, s->code_loops);
    struct py_stats st = py_get_stats(s->py);
    assert_int_equal(st.code_misses, 3);
    assert_int_equal(st.code_hits, 1);
}

static void test_310_broken(void **state)
{
    struct s310 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    /* not a frame object */
    put64(&s->im, s->f_outer, l->ob_type, s->im.loc.code_type);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "f_back to a non-frame");
    put64(&s->im, s->f_outer, l->ob_type, s->im.loc.frame_type);
    /* a loop */
    put64(&s->im, s->f_outer, l->frame_back, s->f_inner);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "f_back loop");
    /* f_code not a code object */
    put64(&s->im, s->f_outer, l->frame_back, 0);
    put64(&s->im, s->f_outer, l->frame_code, s->f_inner);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "f_code to a frame");
    /* f_back outside */
    put64(&s->im, s->f_outer, l->frame_code, s->code_module);
    put64(&s->im, s->f_outer, l->frame_back, 0xdead0000ull);
    expect_walk_fails(s->py, &t[0], PM_EREAD, "f_back outside");
    /* thread list loop */
    put64(&s->im, s->tstate[1], l->tstate_next, s->tstate[0]);
    size_t count;
    struct pm_error err = {0};
    assert_int_equal(py_list_threads(s->py, t, 2, &count, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
}

/* A frame object that returned while we walked sits on a free list with no
 * references: its f_back leads anywhere, so the walk must stop there. */
static void test_310_freed_frame(void **state)
{
    struct s310 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    put64(&s->im, s->f_outer, 0, 0);   /* ob_refcnt */
    expect_walk_fails(s->py, &t[0], PM_ETORN, "frame with no references");
    put64(&s->im, s->f_outer, 0, 1);
    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
}

/* A chain that ends (f_back NULL) below its top at a frame whose eval does
 * not run (f_state not FRAME_EXECUTING) ended early: a frame reused from the
 * free list keeps the list's link as its f_back until its call sets it.  A
 * thread's only frame may be about to start (its flag is set after the call
 * trace), but not have returned. */
static void test_310_chain_ends_at_a_frame_not_running(void **state)
{
    struct s310 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;
    list_threads(s->py, t, 2);
    put8(&s->im, s->f_outer, l->frame_executing, 1);   /* FRAME_RETURNED */
    expect_walk_fails(s->py, &t[0], PM_ETORN, "bottom frame not running");
    put8(&s->im, s->f_outer, l->frame_executing, 0);   /* FRAME_EXECUTING */
    assert_int_equal(walk(s->py, &t[0], frames, 8, &depth, &err), 0);
    assert_int_equal(depth, 2);
    put8(&s->im, s->f2, l->frame_executing, (uint8_t)-2);   /* FRAME_CREATED, alone */
    assert_int_equal(walk(s->py, &t[1], frames, 8, &depth, &err), 0);
    assert_int_equal(depth, 1);
    /* alone, but it ran and returned: taken again since the thread state named it */
    put8(&s->im, s->f2, l->frame_executing, 1);   /* FRAME_RETURNED */
    expect_walk_fails(s->py, &t[1], PM_ETORN, "lone top frame not running");
    put8(&s->im, s->f2, l->frame_executing, 0);   /* FRAME_EXECUTING */
    assert_int_equal(walk(s->py, &t[1], frames, 8, &depth, &err), 0);
    assert_int_equal(depth, 1);
}

/* No chain that existed is longer than the thread's recursion depth plus
 * one (a returning frame's eval drops the depth just before it pops the
 * frame), but a chain joined from two while the thread ran can be: a walk
 * one over the depth is believed only when the next walk finds the same. */
static void test_310_longer_than_recursion_depth(void **state)
{
    struct s310 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    put32(&s->im, s->tstate[0], l->tstate_recursion_depth, 2);
    list_threads(s->py, t, 2);
    expect_walk_depth(s->py, &t[0], 2);

    /* one over: torn the first time, believed when read the same again */
    put32(&s->im, s->tstate[0], l->tstate_recursion_depth, 1);
    list_threads(s->py, t, 2);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "one frame over the depth, first read");
    expect_walk_depth(s->py, &t[0], 2);
    /* only by the very next walk: one of another thread in between, or a
     * different top, starts over */
    expect_walk_fails(s->py, &t[0], PM_ETORN, "one over again, after a good walk");
    expect_walk_depth(s->py, &t[1], 1);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "one over, after another thread's walk");
    struct py_thread moved = t[0];
    moved.top_frame = s->f_outer;
    moved.recursion_depth = 0;   /* unknown: no bound */
    expect_walk_depth(s->py, &moved, 1);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "one over, after a walk from another top");

    /* two over is never believed */
    uint64_t f_deeper = make_frame(&s->im, s->code_loops, s->f_inner, s->lasti_inner);
    put64(&s->im, s->tstate[0], l->tstate_frame, f_deeper);
    list_threads(s->py, t, 2);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "two frames over the depth");
    expect_walk_fails(s->py, &t[0], PM_ETORN, "two frames over the depth, read again");
    put32(&s->im, s->tstate[0], l->tstate_recursion_depth, 3);
    list_threads(s->py, t, 2);
    expect_walk_depth(s->py, &t[0], 3);
}

/* ---- 2.7: PyStringObject names, interp_head, _PyThreadState_Current ---- */

/* A 2.7 str: PyStringObject with len bytes at ob_sval (NUL after them). */
static uint64_t make_pystring(struct image *im, const char *bytes, size_t len)
{
    const struct py_layout *l = im->l;
    uint64_t a = img_alloc(im, (size_t)l->string_sval + len + 1);
    put64(im, a, 0, 1);
    put64(im, a, l->ob_type, im->loc.string_type);
    put64(im, a, l->ob_size, len);
    put64(im, a, l->ob_size + 8, (uint64_t)-1);   /* ob_shash: not computed */
    memcpy(at(im, a + (uint64_t)l->string_sval, len), bytes, len);
    return a;
}

static uint64_t make_pystring_z(struct image *im, const char *s)
{
    return make_pystring(im, s, strlen(s));
}

/*
 * interp_head → interp ── tstate_head → tstate[0] ─next→ tstate[1]
 * tstate[0]: frame f_inner ("far_loop", a line table with jumps of more
 *     than 127 lines, which 2.7 writes as unsigned deltas) ─f_back→ f_outer
 *     (<module>, in a file whose name is UTF-8 bytes)
 * tstate[1]: f2 ("caf\xe9": Latin-1 bytes, not UTF-8)
 * _PyThreadState_Current = tstate[1]: it holds the GIL.
 */
struct s27 {
    struct image im;
    uint64_t interp, tstate[2], f_inner, f_outer, f2;
    uint64_t code_far, code_module, code_cafe;
    const struct linetable_case *tc_far, *tc_module, *tc_gap;
    int32_t lasti_inner, lasti_outer, lasti2;
    struct py_process *py;
    struct reader *reader;
};

static const char FILE_27_UTF8[] = "/srv/app/\xc3\xbcml\xc3\xa4ut.py";

static int setup_27(void **state)
{
    struct s27 *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    *state = s;
    struct image *im = &s->im;
    image_init_version(im, 2, 7);
    const struct py_layout *l = im->l;
    assert_int_equal(l->frames, PY_FRAMES_OBJECT);
    assert_int_equal(l->lines, PY_LINES_LNOTAB27);
    assert_int_equal(l->code_qualname, PY_OFF_NONE);
    assert_int_equal(l->tstate_prev, PY_OFF_NONE);

    s->tc_far = find_case("2.7.18", "far_loop");
    s->tc_module = find_case("2.7.18", "<module>");
    s->tc_gap = find_case("2.7.18", "gap300");
    /* 2.7's f_lasti and its line table both count bytes */
    s->lasti_inner = (int32_t)pos_run_start(s->tc_far, 1);
    s->lasti_outer = (int32_t)pos_run_end(s->tc_module, 1);
    s->lasti2 = (int32_t)pos_run_start(s->tc_gap, 1);

    uint64_t file = make_pystring_z(im, FILE_27_UTF8);
    struct code_spec far = {make_pystring_z(im, "far_loop"), 0, file, s->tc_far};
    struct code_spec module = {make_pystring_z(im, "<module>"), 0, file, s->tc_module};
    struct code_spec cafe = {make_pystring_z(im, "caf\xe9"), 0, make_pystring_z(im, FILE_MOD),
                             s->tc_gap};
    s->code_far = make_code(im, &far);
    s->code_module = make_code(im, &module);
    s->code_cafe = make_code(im, &cafe);

    s->f_outer = make_frame(im, s->code_module, 0, s->lasti_outer);
    s->f_inner = make_frame(im, s->code_far, s->f_outer, s->lasti_inner);
    s->f2 = make_frame(im, s->code_cafe, 0, s->lasti2);

    s->interp = img_alloc(im, 128);
    for (int i = 0; i < 2; i++) {
        s->tstate[i] = img_alloc(im, 256);
        put64(im, s->tstate[i], l->tstate_interp, s->interp);
        put64(im, s->tstate[i], l->tstate_thread_id, 0x7d0000000000ull + (uint64_t)i);
    }
    put64(im, s->tstate[0], l->tstate_frame, s->f_inner);
    put64(im, s->tstate[1], l->tstate_frame, s->f2);
    put64(im, s->tstate[0], l->tstate_next, s->tstate[1]);
    put64(im, s->interp, l->interp_threads_head, s->tstate[0]);
    put64(im, im->loc.interp_head, 0, s->interp);
    put64(im, im->loc.tstate_current, 0, s->tstate[1]);
    open_model(im, &s->py, &s->reader);
    return 0;
}

static int teardown_27(void **state)
{
    struct s27 *s = *state;
    py_detach(s->py);
    free(s->im.mem);
    free(s);
    return 0;
}

static void test_27_threads_and_stacks(void **state)
{
    struct s27 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    assert_int_equal(t[0].tstate, s->tstate[0]);
    assert_int_equal(t[1].tstate, s->tstate[1]);
    assert_int_equal(t[0].interp, s->interp);
    assert_int_equal(t[0].thread_id, 0x7d0000000000ull);
    assert_int_equal(t[1].thread_id, 0x7d0000000001ull);
    assert_int_equal(t[0].os_tid, 0);   /* no native id in 2.7 and no pid to ask */
    /* the current thread state holds the GIL */
    assert_int_equal(t[0].owns_gil, 0);
    assert_int_equal(t[1].owns_gil, 1);
    assert_int_equal(t[0].top_frame, s->f_inner);
    assert_int_equal(t[1].top_frame, s->f2);

    struct py_frame frames[8];
    size_t depth;
    struct pm_error err;
    if (walk(s->py, &t[0], frames, 8, &depth, &err) != 0)
        fail_msg("walk: %s", err.msg);
    assert_int_equal(depth, 2);
    expect_frame(&frames[0], s->code_far, "far_loop", FILE_27_UTF8, 1317,
                 line_at(s->tc_far, (size_t)s->lasti_inner));
    expect_frame(&frames[1], s->code_module, "<module>", FILE_27_UTF8, 1,
                 line_at(s->tc_module, (size_t)s->lasti_outer));
    assert_int_equal(frames[0].entry, 1);
    assert_int_equal(frames[0].addr, s->f_inner);
    /* an off-by-one byte would give another line */
    assert_int_not_equal(line_at(s->tc_far, (size_t)s->lasti_inner),
                         line_at(s->tc_far, (size_t)s->lasti_inner - 1));
    assert_int_not_equal(line_at(s->tc_module, (size_t)s->lasti_outer),
                         line_at(s->tc_module, (size_t)s->lasti_outer + 1));

    /* a byte that is not UTF-8 becomes U+FFFD */
    assert_int_equal(walk(s->py, &t[1], frames, 8, &depth, &err), 0);
    assert_int_equal(depth, 1);
    expect_frame(&frames[0], s->code_cafe, "caf\xef\xbf\xbd", FILE_MOD, 666,
                 line_at(s->tc_gap, (size_t)s->lasti2));

    /* the GIL released: no current thread state, nobody holds it */
    put64(&s->im, s->im.loc.tstate_current, 0, 0);
    list_threads(s->py, t, 2);
    assert_int_equal(t[0].owns_gil + t[1].owns_gil, 0);
    put64(&s->im, s->im.loc.tstate_current, 0, s->tstate[0]);
    list_threads(s->py, t, 2);
    assert_int_equal(t[0].owns_gil, 1);
    assert_int_equal(t[1].owns_gil, 0);
}

/* Every byte offset of a 2.7 table with 255-line jumps (unsigned deltas). */
static void test_27_every_position(void **state)
{
    struct s27 *s = *state;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    const struct linetable_case *tc = s->tc_gap;
    int big_jump = 0;
    for (size_t lasti = 0; lasti < tc->npos; lasti++) {
        put32(&s->im, s->f2, s->im.l->frame_lasti, (uint32_t)lasti);
        py_begin_sample(s->py);
        struct py_frame frames[2];
        size_t depth;
        struct pm_error err;
        assert_int_equal(walk(s->py, &t[1], frames, 2, &depth, &err), 0);
        if (frames[0].line != tc->lines[lasti])
            fail_msg("f_lasti %zu: line %d, the interpreter says %d", lasti, frames[0].line,
                     tc->lines[lasti]);
        big_jump |= frames[0].line - tc->firstlineno > 127;
    }
    assert_true(big_jump);
}

/* 2.7 strings are checked: type, length, and bounded copies. */
static void test_27_strings(void **state)
{
    struct s27 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    struct py_frame frames[4];
    size_t depth;
    struct pm_error err;

    /* a name that is not a PyStringObject */
    uint64_t name = make_pystring_z(&s->im, "other");
    put64(&s->im, s->code_cafe, l->code_name, name);
    put64(&s->im, name, l->ob_type, s->im.loc.unicode_type);
    list_threads(s->py, t, 2);
    expect_walk_fails(s->py, &t[1], PM_ETORN, "2.7 name of another type");
    /* a negative ob_size */
    put64(&s->im, name, l->ob_type, s->im.loc.string_type);
    put64(&s->im, name, l->ob_size, (uint64_t)-5);
    expect_walk_fails(s->py, &t[1], PM_ETORN, "2.7 str with a negative size");
    /* a size no address space holds */
    put64(&s->im, name, l->ob_size, 1ull << 50);
    expect_walk_fails(s->py, &t[1], PM_ETORN, "2.7 str larger than memory");
    /* the data pointer past the image: the name object itself is outside */
    put64(&s->im, name, l->ob_size, 5);
    put64(&s->im, s->code_cafe, l->code_name, IMG_BASE + IMG_SIZE - 8);
    expect_walk_fails(s->py, &t[1], PM_EREAD, "2.7 str past the image");

    /* a long name is cut to the walker's bound, on a character boundary */
    char long_name[3000];
    for (size_t i = 0; i + 1 < sizeof long_name; i += 2)
        memcpy(long_name + i, "\xce\xbb", 2);   /* λ */
    long_name[sizeof long_name - 1] = '\0';
    put64(&s->im, s->code_cafe, l->code_name, make_pystring_z(&s->im, long_name));
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[1], frames, 4, &depth, &err), 0);
    size_t n = strlen(frames[0].code->name);
    assert_true(n > 0 && n < 1024);
    assert_int_equal(n % 2, 0);
    assert_memory_equal(frames[0].code->name, long_name, n);

    /* an empty name */
    put64(&s->im, s->code_cafe, l->code_name, make_pystring(&s->im, "", 0));
    list_threads(s->py, t, 2);
    assert_int_equal(walk(s->py, &t[1], frames, 4, &depth, &err), 0);
    assert_string_equal(frames[0].code->name, "");
}

/* The torn-read checks hold for 2.7 frames as for 3.8–3.10. */
static void test_27_broken(void **state)
{
    struct s27 *s = *state;
    const struct py_layout *l = s->im.l;
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    put64(&s->im, s->f_outer, 0, 0);   /* ob_refcnt: a freed frame */
    expect_walk_fails(s->py, &t[0], PM_ETORN, "2.7 frame with no references");
    put64(&s->im, s->f_outer, 0, 1);
    put64(&s->im, s->f_outer, l->frame_back, s->f_inner);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "2.7 f_back loop");
    put64(&s->im, s->f_outer, l->frame_back, 0);
    put64(&s->im, s->f_outer, l->frame_code, s->f_inner);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "2.7 f_code to a frame");
    put64(&s->im, s->f_outer, l->frame_code, s->code_module);
    put64(&s->im, s->tstate[1], l->tstate_next, s->tstate[0]);
    size_t count;
    struct pm_error err = {0};
    assert_int_equal(py_list_threads(s->py, t, 2, &count, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
    /* an interpreter list that loops */
    put64(&s->im, s->tstate[1], l->tstate_next, 0);
    put64(&s->im, s->interp, l->interp_next, s->interp);
    assert_int_equal(py_list_threads(s->py, t, 2, &count, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
}

/* Without interp_head (a stripped binary) there is no thread list. */
static void test_27_no_interp_head(void **state)
{
    (void)state;
    struct image im;
    image_init_version(&im, 2, 7);
    im.loc.interp_head = 0;
    struct py_process *py;
    struct reader *reader;
    open_model(&im, &py, &reader);
    struct py_thread t[1];
    size_t count;
    struct pm_error err = {0};
    assert_int_equal(py_list_threads(py, t, 1, &count, &err), -1);
    assert_int_equal(err.code, PM_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "2.7.1"));
    py_detach(py);
    free(im.mem);
}

/* 3.6: the GIL statics (gil_locked, gil_last_holder) and
 * _PyThreadState_Current, which wins when set. */
static void test_36_gil(void **state)
{
    (void)state;
    struct image im;
    image_init_version(&im, 3, 6);
    const struct py_layout *l = im.l;
    assert_int_equal(l->lines, PY_LINES_LNOTAB);
    im.loc.gil_locked = img_alloc(&im, 8);
    im.loc.gil_last_holder = img_alloc(&im, 8);
    const struct linetable_case *tc = find_case("3.6.15", "loops");
    struct code_spec loops = {make_ascii(&im, "loops"), 0, make_ascii(&im, FILE_MOD), tc};
    uint64_t code = make_code(&im, &loops);
    int32_t lasti = (int32_t)pos_run_start(tc, 2);
    uint64_t interp = img_alloc(&im, 256), tstate[2];
    for (int i = 0; i < 2; i++) {
        tstate[i] = img_alloc(&im, 256);
        put64(&im, tstate[i], l->tstate_interp, interp);
        put64(&im, tstate[i], l->tstate_thread_id, 0x7c0000000000ull + (uint64_t)i);
        put64(&im, tstate[i], l->tstate_frame, make_frame(&im, code, 0, lasti));
    }
    put64(&im, tstate[0], l->tstate_next, tstate[1]);
    put64(&im, tstate[1], l->tstate_prev, tstate[0]);
    put64(&im, interp, l->interp_threads_head, tstate[0]);
    put64(&im, im.loc.interp_head, 0, interp);
    /* no GIL yet (3.6 creates it when a second thread starts): gil_locked -1 */
    put32(&im, im.loc.gil_locked, 0, (uint32_t)-1);
    put64(&im, im.loc.tstate_current, 0, tstate[0]);
    struct py_process *py;
    struct reader *reader;
    open_model(&im, &py, &reader);

    struct py_thread t[2];
    list_threads(py, t, 2);
    assert_int_equal(t[0].owns_gil, 1);
    assert_int_equal(t[1].owns_gil, 0);
    struct py_frame frames[2];
    size_t depth;
    struct pm_error err;
    assert_int_equal(walk(py, &t[1], frames, 2, &depth, &err), 0);
    assert_int_equal(depth, 1);
    expect_frame(&frames[0], code, "loops", FILE_MOD, 17, line_at(tc, (size_t)lasti));

    /* taken by tstate[1], which has not set the current thread state yet */
    put64(&im, im.loc.tstate_current, 0, 0);
    put32(&im, im.loc.gil_locked, 0, 1);
    put64(&im, im.loc.gil_last_holder, 0, tstate[1]);
    list_threads(py, t, 2);
    assert_int_equal(t[0].owns_gil, 0);
    assert_int_equal(t[1].owns_gil, 1);
    /* released: last_holder stays, but nobody holds it */
    put32(&im, im.loc.gil_locked, 0, 0);
    list_threads(py, t, 2);
    assert_int_equal(t[0].owns_gil + t[1].owns_gil, 0);
    py_detach(py);
    free(im.mem);
}

/* 3.11+: a frame at or above the thread's datastack_top has returned. */
static void test_312_frame_above_stack_top(void **state)
{
    struct s312 *s = *state;
    const struct py_layout *l = s->im.l;
    put64(&s->im, s->tstate[0], l->tstate_datastack_top, s->f_inner);
    struct py_thread t[2];
    list_threads(s->py, t, 2);
    expect_walk_fails(s->py, &t[0], PM_ETORN, "innermost frame above datastack_top");
}

int main(void)
{
#define T312(fn) cmocka_unit_test_setup_teardown(fn, setup_312, teardown_312)
#define T310(fn) cmocka_unit_test_setup_teardown(fn, setup_310, teardown_310)
    const struct CMUnitTest tests[] = {
        T312(test_312_threads),
        T312(test_312_stack),
        T312(test_312_every_position),
        T312(test_312_chunk_or_not),
        T312(test_312_frame_not_started),
        T312(test_312_accessors),
        T312(test_312_frame_loop),
        T312(test_312_non_code_object),
        T312(test_312_pointers_outside),
        T312(test_312_thread_list_loops),
        T312(test_312_cap),
        T312(test_312_deep_stack),
        T312(test_312_empty),
        T312(test_312_two_interpreters),
        T312(test_312_refresh),
        T312(test_str_bad_kind),
        T312(test_str_bad_length),
        T312(test_str_long_name_truncated),
        T312(test_str_legacy),
        T312(test_code_cache_notices_replacement),
        cmocka_unit_test(test_open_rejects_absurd_layout),
        T310(test_310_freed_frame),
        T310(test_310_chain_ends_at_a_frame_not_running),
        T310(test_310_longer_than_recursion_depth),
        T312(test_312_frame_above_stack_top),
        T310(test_310_threads_and_stacks),
        T310(test_310_every_position),
        T310(test_310_code_cache),
        T310(test_310_broken),
        cmocka_unit_test_setup_teardown(test_27_threads_and_stacks, setup_27, teardown_27),
        cmocka_unit_test_setup_teardown(test_27_every_position, setup_27, teardown_27),
        cmocka_unit_test_setup_teardown(test_27_strings, setup_27, teardown_27),
        cmocka_unit_test_setup_teardown(test_27_broken, setup_27, teardown_27),
        cmocka_unit_test(test_27_no_interp_head),
        cmocka_unit_test(test_36_gil),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
