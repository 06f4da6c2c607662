/*
 * test_heap.c — the heap census (python/heap.h) over synthetic memory.
 *
 * A 1 MiB image (reader_buffer_new) holds type objects, GC list heads and
 * objects laid out with the generated 3.12 and 2.7 tables (gclayout_gen.c):
 * exact counts and shallow sizes per type (fixed and variable size, an
 * |ob_size| that is negative), flag bits under 3.8+'s prev links, an empty
 * list, objects whose "type" is not a type or NULL (counted as unreadable), names
 * made valid UTF-8, objects of two type objects with one name merged, the
 * sort order; then what must fail: a list that loops back on itself, a
 * broken back link, a head that disagrees about the last node, the object
 * limit and the copy limit (with a memory map); and heap_growth.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "python/heap.h"
#include "target/maps.h"

#define BASE 0x7f0000000000ull
#define IMAGE (1u << 20)

struct image {
    uint8_t *mem;
    uint64_t next;                 /* bump allocator (target addresses) */
    const struct py_gclayout *gc;
    uint64_t meta;                 /* the `type` type */
};

static uint8_t *at(struct image *im, uint64_t addr)
{
    assert_true(addr >= BASE && addr < BASE + IMAGE);
    return im->mem + (addr - BASE);
}

static void put64(struct image *im, uint64_t addr, uint64_t v)
{
    memcpy(at(im, addr), &v, 8);
}

static uint64_t alloc(struct image *im, size_t len)
{
    uint64_t a = im->next;
    im->next += (len + 15) & ~(size_t)15;
    assert_true(im->next <= BASE + IMAGE);
    return a;
}

static uint64_t cstring(struct image *im, const char *s)
{
    uint64_t a = alloc(im, strlen(s) + 1);
    memcpy(at(im, a), s, strlen(s) + 1);
    return a;
}

/* A type object named `name`, whose type is `meta` (0: the image's `type`). */
static uint64_t make_type(struct image *im, const char *name, int64_t basicsize,
                          int64_t itemsize, uint64_t flags, uint64_t meta)
{
    const struct py_gclayout *gc = im->gc;
    uint64_t t = alloc(im, 1024);
    put64(im, t + (uint64_t)gc->ob_type, meta ? meta : im->meta);
    put64(im, t + (uint64_t)gc->type_name, cstring(im, name));
    put64(im, t + (uint64_t)gc->type_basicsize, (uint64_t)basicsize);
    put64(im, t + (uint64_t)gc->type_itemsize, (uint64_t)itemsize);
    put64(im, t + (uint64_t)gc->type_flags, flags);
    return t;
}

static void image_init(struct image *im, const struct py_gclayout *gc)
{
    im->mem = calloc(1, IMAGE);
    assert_non_null(im->mem);
    im->next = BASE + 4096;
    im->gc = gc;
    im->meta = 0;
    /* `type` is its own type */
    uint64_t meta = alloc(im, 1024);
    im->meta = meta;
    put64(im, meta + (uint64_t)gc->ob_type, meta);
    put64(im, meta + (uint64_t)gc->type_name, cstring(im, "type"));
    put64(im, meta + (uint64_t)gc->type_basicsize, 900);
    put64(im, meta + (uint64_t)gc->type_itemsize, 40);
    put64(im, meta + (uint64_t)gc->type_flags, (uint64_t)gc->flag_type_subclass);
}

/* A list head linked to itself (an empty generation). */
static uint64_t make_head(struct image *im)
{
    uint64_t h = alloc(im, 64);
    put64(im, h + (uint64_t)im->gc->gchead_next, h);
    put64(im, h + (uint64_t)im->gc->gchead_prev, h);
    return h;
}

/* A GC-tracked object of `type` (ob_size `size`) appended to the list at
 * head; `prev_flags` are OR-ed into its prev link (3.8+ flag bits).
 * Returns its PyGC_Head address. */
static uint64_t add_object(struct image *im, uint64_t head, uint64_t type, int64_t size,
                           uint64_t prev_flags)
{
    const struct py_gclayout *gc = im->gc;
    uint64_t mask = ~(((uint64_t)1 << gc->gchead_prev_shift) - 1);
    uint64_t node = alloc(im, (size_t)gc->gchead_size + 64);
    uint64_t obj = node + (uint64_t)gc->gchead_size;
    uint64_t last;
    memcpy(&last, at(im, head + (uint64_t)gc->gchead_prev), 8);
    last &= mask;
    put64(im, obj + (uint64_t)gc->ob_type, type);
    put64(im, obj + (uint64_t)gc->ob_size, (uint64_t)size);
    put64(im, last + (uint64_t)gc->gchead_next, node);
    put64(im, node + (uint64_t)gc->gchead_prev, last | prev_flags);
    put64(im, node + (uint64_t)gc->gchead_next, head);
    put64(im, head + (uint64_t)gc->gchead_prev, node);
    return node;
}

static int census(struct image *im, const uint64_t *heads, size_t n,
                  const struct heap_options *opts, const struct proc_maps *maps,
                  struct heap_census *out, struct pm_error *err)
{
    struct reader *r = reader_buffer_new(im->mem, IMAGE, BASE);
    assert_non_null(r);
    struct heap_source src = {.reader = r, .gc = im->gc, .maps = maps, .heads = heads,
                              .nheads = n};
    struct heap_options none = {0};
    int rc = heap_census_lists(&src, opts ? opts : &none, out, err);
    reader_close(r);
    return rc;
}

static const struct heap_type_count *find(const struct heap_census *c, const char *name)
{
    for (size_t i = 0; i < c->ntypes; i++)
        if (strcmp(c->types[i].name, name) == 0)
            return &c->types[i];
    return NULL;
}

/* ---- counts ------------------------------------------------------------- */

static void counts_for(const struct py_gclayout *gc)
{
    struct image im;
    image_init(&im, gc);
    uint64_t alpha = make_type(&im, "Alpha", 48, 0, 0, 0);
    uint64_t vec = make_type(&im, "Vec", 24, 8, 0, 0);
    uint64_t vec_again = make_type(&im, "Vec", 24, 8, 0, 0);   /* same name, other type */
    uint64_t odd = make_type(&im, "bad\x01name\xff", 16, 0, 0, 0);
    uint64_t not_meta = alloc(&im, 1024);                      /* flags lack TYPE_SUBCLASS */
    uint64_t fake = make_type(&im, "Fake", 16, 0, 0, not_meta);
    uint64_t heads[3] = {make_head(&im), make_head(&im), make_head(&im)};
    uint64_t flag = gc->gchead_prev_shift > 0 ? 1 : 0;         /* _PyGC_PREV_MASK_FINALIZED */
    for (int i = 0; i < 3; i++)
        add_object(&im, heads[0], alpha, 0, i == 1 ? flag : 0);
    add_object(&im, heads[0], odd, 0, 0);
    add_object(&im, heads[1], vec, 5, flag);
    add_object(&im, heads[1], vec, -3, 0);                     /* |ob_size| counts */
    add_object(&im, heads[1], vec_again, 1, 0);
    add_object(&im, heads[1], fake, 0, 0);
    add_object(&im, heads[1], 0, 0, 0);                        /* a NULL type (found by fuzzing) */
    /* heads[2]: empty */

    struct heap_census c;
    struct pm_error err = {0};
    assert_int_equal(census(&im, heads, 3, NULL, NULL, &c, &err), 0);
    assert_int_equal(c.objects, 9);
    assert_int_equal(c.unreadable, 2);
    assert_int_equal(c.lists, 3);
    assert_int_equal(c.ntypes, 3);
    assert_int_equal(c.retries, 0);
    assert_int_equal(c.relinks, 0);
    /* largest first: Alpha 3 x 48 = 144, Vec 3 x 24 + (5 + 3 + 1) x 8 = 144 too, then by count
     * (equal), then by name */
    assert_string_equal(c.types[0].name, "Alpha");
    assert_int_equal(c.types[0].count, 3);
    assert_int_equal(c.types[0].size, 144);
    assert_string_equal(c.types[1].name, "Vec");
    assert_int_equal(c.types[1].count, 3);
    assert_int_equal(c.types[1].size, 144);
    const struct heap_type_count *bad = find(&c, "bad?name?");
    assert_non_null(bad);
    assert_int_equal(bad->count, 1);
    assert_int_equal(bad->size, 16);
    assert_null(find(&c, "Fake"));
    assert_int_equal(c.size, 144 + 144 + 16);
    heap_census_free(&c);
    free(im.mem);
}

static void test_counts_312(void **state)
{
    (void)state;
    const struct py_gclayout *gc = py_gclayout_for(3, 12);
    assert_non_null(gc);
    assert_int_equal(gc->gchead_size, 16);
    assert_int_equal(gc->gchead_prev_shift, 2);
    counts_for(gc);
}

static void test_counts_27(void **state)
{
    (void)state;
    const struct py_gclayout *gc = py_gclayout_for(2, 7);
    assert_non_null(gc);
    assert_int_equal(gc->where, PY_GC_STATIC);
    assert_int_equal(gc->gchead_prev_shift, 0);
    counts_for(gc);
}

static void test_tables(void **state)
{
    (void)state;
    static const int versions[][2] = {{2, 7}, {3, 6}, {3, 7}, {3, 8}, {3, 9},
                                      {3, 10}, {3, 11}, {3, 12}, {3, 13}};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        const struct py_gclayout *gc = py_gclayout_for(versions[i][0], versions[i][1]);
        assert_non_null(gc);
        assert_int_equal(gc->num_generations, 3);
        assert_true(gc->generation_size >= gc->gchead_size + 8);
        int old = versions[i][0] == 2 || versions[i][1] <= 7;
        assert_int_equal(gc->gchead_size, old ? 32 : 16);
        int static_array = versions[i][0] == 2 || versions[i][1] == 6;
        enum py_gc_where where = static_array ? PY_GC_STATIC
                               : versions[i][1] <= 8 ? PY_GC_RUNTIME : PY_GC_INTERP;
        assert_int_equal(gc->where, where);
        assert_int_equal(gc->gc_permanent == PY_OFF_NONE, where == PY_GC_STATIC);
    }
    assert_null(py_gclayout_for(3, 5));
    assert_null(py_gclayout_for(3, 14));
}

/* ---- what must fail ------------------------------------------------------- */

static void expect_torn(struct image *im, uint64_t head, const char *why)
{
    struct heap_census c;
    struct pm_error err = {0};
    assert_int_equal(census(im, &head, 1, NULL, NULL, &c, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
    if (strstr(err.msg, why) == NULL)
        fail_msg("expected \"%s\" in: %s", why, err.msg);
    assert_non_null(strstr(err.msg, "after 5 tries"));
    assert_null(c.types);
}

static void test_cycle(void **state)
{
    (void)state;
    struct image im;
    image_init(&im, py_gclayout_for(3, 12));
    const struct py_gclayout *gc = im.gc;
    uint64_t t = make_type(&im, "Alpha", 48, 0, 0, 0);
    uint64_t head = make_head(&im);
    uint64_t a = add_object(&im, head, t, 0, 0);
    uint64_t b = add_object(&im, head, t, 0, 0);
    add_object(&im, head, t, 0, 0);
    put64(&im, b + (uint64_t)gc->gchead_next, a);   /* b -> a: a loop not through the head */
    expect_torn(&im, head, "broken back link");
    /* a loop whose back links agree (a's prev rewritten): caught as a cycle
     * or at the head, never walked forever */
    put64(&im, a + (uint64_t)gc->gchead_prev, b);
    struct heap_census c;
    struct pm_error err = {0};
    assert_int_equal(census(&im, &head, 1, NULL, NULL, &c, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
    free(im.mem);
}

static void test_torn_links(void **state)
{
    (void)state;
    struct image im;
    image_init(&im, py_gclayout_for(3, 12));
    const struct py_gclayout *gc = im.gc;
    uint64_t t = make_type(&im, "Alpha", 48, 0, 0, 0);
    uint64_t head = make_head(&im);
    add_object(&im, head, t, 0, 0);
    uint64_t b = add_object(&im, head, t, 0, 0);
    uint64_t c3 = add_object(&im, head, t, 0, 0);
    put64(&im, b + (uint64_t)gc->gchead_prev, c3);  /* b's back link names another node */
    expect_torn(&im, head, "broken back link");

    free(im.mem);
    image_init(&im, py_gclayout_for(3, 12));
    t = make_type(&im, "Alpha", 48, 0, 0, 0);
    head = make_head(&im);
    uint64_t a = add_object(&im, head, t, 0, 0);
    add_object(&im, head, t, 0, 0);
    put64(&im, head + (uint64_t)gc->gchead_prev, a); /* the head names another last node */
    expect_torn(&im, head, "broken back link");

    free(im.mem);
    image_init(&im, py_gclayout_for(3, 12));
    t = make_type(&im, "Alpha", 48, 0, 0, 0);
    head = make_head(&im);
    a = add_object(&im, head, t, 0, 0);
    put64(&im, a + (uint64_t)gc->gchead_next, BASE + IMAGE + 4096);   /* off the image */
    expect_torn(&im, head, "bad link");
    free(im.mem);
}

static void test_unreadable_head(void **state)
{
    (void)state;
    struct image im;
    image_init(&im, py_gclayout_for(3, 12));
    uint64_t head = BASE + IMAGE + 64;
    struct heap_census c;
    struct pm_error err = {0};
    assert_int_equal(census(&im, &head, 1, NULL, NULL, &c, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    free(im.mem);
}

static void test_limits(void **state)
{
    (void)state;
    struct image im;
    image_init(&im, py_gclayout_for(3, 12));
    uint64_t t = make_type(&im, "Alpha", 48, 0, 0, 0);
    uint64_t head = make_head(&im);
    for (int i = 0; i < 3; i++)
        add_object(&im, head, t, 0, 0);
    struct heap_census c;
    struct pm_error err = {0};
    struct heap_options o = {.max_objects = 2};
    assert_int_equal(census(&im, &head, 1, &o, NULL, &c, &err), -1);
    assert_int_equal(err.code, PM_EUSAGE);
    assert_non_null(strstr(err.msg, "--max-objects"));
    o.max_objects = 3;
    assert_int_equal(census(&im, &head, 1, &o, NULL, &c, &err), 0);
    assert_int_equal(c.objects, 3);
    heap_census_free(&c);

    /* with a memory map, blocks are cut to the mapping and counted */
    char text[256];
    snprintf(text, sizeof text, "%llx-%llx rw-p 00000000 00:00 0\n", (unsigned long long)BASE,
             (unsigned long long)(BASE + IMAGE));
    struct proc_maps maps;
    assert_int_equal(maps_parse(text, &maps, &err), 0);
    struct heap_options small = {.max_copy = IMAGE / 2};
    assert_int_equal(census(&im, &head, 1, &small, &maps, &c, &err), -1);
    assert_int_equal(err.code, PM_EUSAGE);
    assert_non_null(strstr(err.msg, "--max-copy"));
    struct heap_options enough = {.max_copy = IMAGE};
    assert_int_equal(census(&im, &head, 1, &enough, &maps, &c, &err), 0);
    assert_int_equal(c.objects, 3);
    assert_int_equal(c.copied, IMAGE);
    heap_census_free(&c);
    maps_free(&maps);
    free(im.mem);
}

/* ---- growth ----------------------------------------------------------------- */

static void test_growth(void **state)
{
    (void)state;
    struct heap_type_count before_types[] = {
        {"dict", 10, 1000}, {"Session", 1, 48}, {"list", 5, 200}, {"Gone", 3, 30}};
    struct heap_type_count after_types[] = {
        {"Session", 10001, 480048}, {"dict", 9, 2000}, {"list", 5, 200}, {"New", 2, 64},
        {"tuple", 1, 1}};
    struct heap_census before = {.types = before_types, .ntypes = 4};
    struct heap_census after = {.types = after_types, .ntypes = 5};
    struct heap_growth *g;
    size_t n;
    assert_int_equal(heap_growth(&before, &after, &g, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(g[0].name, "Session");
    assert_int_equal(g[0].count_delta, 10000);
    assert_int_equal(g[0].size_delta, 480000);
    assert_int_equal(g[0].count_before, 1);
    assert_int_equal(g[0].size_after, 480048);
    assert_string_equal(g[1].name, "dict");        /* fewer objects, more bytes */
    assert_int_equal(g[1].count_delta, -1);
    assert_int_equal(g[1].size_delta, 1000);
    assert_string_equal(g[2].name, "New");
    assert_int_equal(g[2].count_before, 0);
    assert_int_equal(g[2].count_delta, 2);
    assert_string_equal(g[3].name, "tuple");
    free(g);
    struct heap_census empty = {0};
    assert_int_equal(heap_growth(&empty, &empty, &g, &n), 0);
    assert_int_equal(n, 0);
    free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_counts_312),
        cmocka_unit_test(test_counts_27),
        cmocka_unit_test(test_cycle),
        cmocka_unit_test(test_torn_links),
        cmocka_unit_test(test_unreadable_head),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
