/*
 * test_render.c — the output formats, on a small hand-built profile:
 * collapsed stacks exactly; the flame graph SVG is well-formed XML (checked
 * by Python's XML parser) with escaped names, percentages and its script;
 * speedscope JSON parses and has the right profiles, frames and weights;
 * Unicode, markup characters and invalid UTF-8 survive every format; write
 * errors become PM_EOUTPUT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "render/render.h"

#define NASTY_NAME "a<b>&\"c;d"

/* The profile every test renders (10 samples over two threads):
 *   thread 1001 "MainThread":  main;work;leaf x3, main;work x1, main;fünction_λ x1
 *   thread 1002 "":            main;work;leaf x2, worker_loop;NASTY x1,
 *                              worker_loop;日本 (native) x2
 */
struct fixture {
    struct profile *p;
    uint32_t main_f, work_f, leaf_f, unicode_f, worker_f, nasty_f, native_f;
};

static struct fixture make_fixture(void)
{
    struct fixture fx;
    struct profile *p = profile_new();
    assert_non_null(p);
    fx.p = p;
    p->meta.pid = 4242;
    p->meta.rate_hz = 100;
    p->meta.duration_ns = 2500000000ULL;
    p->meta.samples = 5;
    snprintf(p->meta.python_version, sizeof p->meta.python_version, "3.12.1");
    snprintf(p->meta.program, sizeof p->meta.program, "python3 app.py --flag");

    fx.main_f = profile_frame(p, "main", "/srv/app.py", "app.py", 10, PROFILE_FRAME_PYTHON);
    fx.work_f = profile_frame(p, "work", "/srv/app.py", "app.py", 20, PROFILE_FRAME_PYTHON);
    fx.leaf_f = profile_frame(p, "leaf", "/srv/app.py", "app.py", 30, PROFILE_FRAME_PYTHON);
    fx.unicode_f = profile_frame(p, "fünction_λ", "/srv/ü.py", "ü.py", 7,
                                 PROFILE_FRAME_PYTHON);
    fx.worker_f = profile_frame(p, "worker_loop", "/srv/lib/w.py", "lib/w.py", 5,
                                PROFILE_FRAME_PYTHON);
    fx.nasty_f = profile_frame(p, NASTY_NAME, "/srv/lib/w.py", "lib/w.py", 0,
                               PROFILE_FRAME_PYTHON);
    fx.native_f = profile_frame(p, "日本", "", "", 0, PROFILE_FRAME_NATIVE);

    uint32_t t1 = profile_thread(p, 4242, 1, 1001, "MainThread");
    uint32_t t2 = profile_thread(p, 4242, 2, 1002, NULL);
    uint32_t mwl[] = { fx.main_f, fx.work_f, fx.leaf_f };
    uint32_t mu[] = { fx.main_f, fx.unicode_f };
    uint32_t wn[] = { fx.worker_f, fx.nasty_f };
    uint32_t wj[] = { fx.worker_f, fx.native_f };
    uint64_t tick = 10000000;  /* 10 ms */

    profile_add(p, t1, mwl, 3, 1, 0 * tick);
    profile_add(p, t2, mwl, 3, 1, 0 * tick);
    profile_add(p, t1, mwl, 3, 1, 1 * tick);
    profile_add(p, t2, wn, 2, 1, 1 * tick);
    profile_add(p, t1, mwl, 2, 1, 2 * tick);
    profile_add(p, t2, mwl, 3, 1, 2 * tick);
    profile_add(p, t1, mwl, 3, 1, 3 * tick);
    profile_add(p, t2, wj, 2, 2, 3 * tick);
    profile_add(p, t1, mu, 2, 1, 4 * tick);
    assert_int_equal(profile_total(p), 10);
    return fx;
}

/* Render into a malloc'd NUL-terminated string. */
static char *render_to_string(int (*render)(const struct profile *, const struct render_opts *,
                                            FILE *, struct pm_error *),
                              const struct profile *p, const struct render_opts *o)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    struct pm_error err = { 0 };
    int rc = render(p, o, out, &err);
    if (rc != 0)
        fail_msg("render failed: %s", err.msg);
    assert_int_equal(fclose(out), 0);
    return text;
}

static size_t count_occurrences(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *at = strstr(haystack, needle); at; at = strstr(at + 1, needle))
        n++;
    return n;
}

/* Write `text` to a temporary file and have Python's XML parser read it. */
static int is_well_formed_xml(const char *text)
{
    char path[] = "/tmp/pyrometer-test-XXXXXX.svg";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char command[256];
    snprintf(command, sizeof command,
             "/usr/bin/python3 -c 'import xml.dom.minidom,sys; "
             "xml.dom.minidom.parse(sys.argv[1])' %s", path);
    int status = system(command);
    unlink(path);
    return status == 0;
}

/* ---------------------------------------------------------------------------
 * Format table.
 * ------------------------------------------------------------------------- */

static void test_format_names(void **state)
{
    (void)state;
    assert_int_equal(render_format_parse("flamegraph"), RENDER_FLAMEGRAPH);
    assert_int_equal(render_format_parse("speedscope"), RENDER_SPEEDSCOPE);
    assert_int_equal(render_format_parse("raw"), RENDER_RAW);
    assert_int_equal(render_format_parse("svg"), -1);
    assert_int_equal(render_format_parse(""), -1);
    assert_int_equal(render_format_parse(NULL), -1);
    assert_string_equal(render_format_name(RENDER_FLAMEGRAPH), "flamegraph");
    assert_string_equal(render_format_name(RENDER_SPEEDSCOPE), "speedscope");
    assert_string_equal(render_format_name(RENDER_RAW), "raw");
    assert_string_equal(render_format_ext(RENDER_FLAMEGRAPH), "svg");
    assert_string_equal(render_format_ext(RENDER_SPEEDSCOPE), "speedscope.json");
    assert_string_equal(render_format_ext(RENDER_RAW), "txt");
}

static void test_render_profile_dispatches(void **state)
{
    (void)state;
    struct fixture fx = make_fixture();
    struct render_opts o = { 0 };
    char *direct = render_to_string(render_collapsed, fx.p, &o);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    struct pm_error err = { 0 };
    assert_int_equal(render_profile(RENDER_RAW, fx.p, NULL, out, &err), 0);
    fclose(out);
    assert_string_equal(text, direct);
    free(text);
    free(direct);

    out = open_memstream(&text, &len);
    assert_int_equal(render_profile(RENDER_FLAMEGRAPH, fx.p, &o, out, &err), 0);
    fclose(out);
    assert_non_null(strstr(text, "<svg"));
    free(text);
    profile_free(fx.p);
}

static void test_write_errors_are_reported(void **state)
{
    (void)state;
    struct fixture fx = make_fixture();
    struct render_opts o = { 0 };
    for (int f = RENDER_FLAMEGRAPH; f <= RENDER_RAW; f++) {
        FILE *full = fopen("/dev/full", "w");
        if (full == NULL)
            skip();
        struct pm_error err = { 0 };
        assert_int_equal(render_profile((enum render_format)f, fx.p, &o, full, &err), -1);
        assert_int_equal(err.code, PM_EOUTPUT);
        assert_non_null(strstr(err.msg, "output"));
        fclose(full);
    }
    profile_free(fx.p);
}

/* ---------------------------------------------------------------------------
 * Collapsed stacks.
 * ------------------------------------------------------------------------- */

static void test_collapsed_exact(void **state)
{
    (void)state;
    struct fixture fx = make_fixture();
    struct render_opts o = { 0 };
    char *text = render_to_string(render_collapsed, fx.p, &o);
    assert_string_equal(text,
                        "main (app.py:10);fünction_λ (ü.py:7) 1\n"
                        "main (app.py:10);work (app.py:20) 1\n"
                        "main (app.py:10);work (app.py:20);leaf (app.py:30) 5\n"
                        "worker_loop (lib/w.py:5);a<b>&\"c:d (lib/w.py) 1\n"
                        "worker_loop (lib/w.py:5);日本 2\n");
    free(text);

    o.full_filenames = 1;
    text = render_to_string(render_collapsed, fx.p, &o);
    assert_non_null(strstr(text, "main (/srv/app.py:10);work (/srv/app.py:20) 1\n"));
    free(text);
    profile_free(fx.p);
}

static void test_collapsed_sanitises_separators(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t t = profile_thread(p, 1, 1, 0, NULL);
    uint32_t f[2] = {
        profile_frame(p, "two\nlines;here", "/x;y.py", "x;y.py", 1, PROFILE_FRAME_PYTHON),
        profile_frame(p, "cr\rhere\x1b[2J", "", "", 0, PROFILE_FRAME_NATIVE),
    };
    profile_add(p, t, f, 2, 3, 0);
    profile_add(p, t, NULL, 0, 4, 0);  /* an empty stack has no line */
    struct render_opts o = { 0 };
    char *text = render_to_string(render_collapsed, p, &o);
    assert_string_equal(text, "two lines:here (x:y.py:1);cr here [2J 3\n");
    free(text);
    profile_free(p);
}

/* ---------------------------------------------------------------------------
 * Flame graph.
 * ------------------------------------------------------------------------- */

static void test_flamegraph_is_well_formed_and_complete(void **state)
{
    (void)state;
    struct fixture fx = make_fixture();
    struct render_opts o = { 0 };
    char *svg = render_to_string(render_flamegraph, fx.p, &o);
    assert_true(is_well_formed_xml(svg));

    assert_non_null(strstr(svg, "encoding=\"UTF-8\""));
    assert_non_null(strstr(svg, "<script><![CDATA["));
    assert_non_null(strstr(svg, "Reset zoom"));
    assert_non_null(strstr(svg, ">Search<"));
    /* title and subtitle */
    assert_non_null(strstr(svg, "pyrometer: python3 app.py --flag"));
    assert_non_null(strstr(svg, "10 samples"));
    assert_non_null(strstr(svg, "2.50 s"));
    assert_non_null(strstr(svg, "100 Hz"));
    assert_non_null(strstr(svg, "Python 3.12.1"));

    /* threads are merged: one frame "leaf" with 5 of 10 samples */
    assert_int_equal(count_occurrences(svg, "<title>leaf (app.py:30) \xe2\x80\x94 5 samples "
                                            "(50.00%)</title>"), 1);
    assert_int_equal(count_occurrences(svg, "<title>main (app.py:10) \xe2\x80\x94 7 samples "
                                            "(70.00%)</title>"), 1);
    assert_int_equal(count_occurrences(svg, "<title>all \xe2\x80\x94 10 samples "
                                            "(100.00%)</title>"), 1);
    /* markup in names is escaped, never raw; ';' is kept (XML is fine with it) */
    assert_int_equal(count_occurrences(svg, "<title>a&lt;b&gt;&amp;&quot;c;d (lib/w.py) "
                                            "\xe2\x80\x94 1 sample (10.00%)</title>"), 1);
    assert_null(strstr(svg, NASTY_NAME));
    assert_null(strstr(svg, "a<b>"));
    /* Unicode survives as UTF-8 */
    assert_int_equal(count_occurrences(svg, "<title>fünction_λ (ü.py:7) \xe2\x80\x94"), 1);
    assert_int_equal(count_occurrences(svg, "<title>日本 \xe2\x80\x94 2 samples (20.00%)"), 1);
    /* one frame per tree node: all, main, work, leaf, fünction_λ, worker_loop, nasty, 日本 */
    assert_int_equal(count_occurrences(svg, "<g data-o="), 8);
    assert_null(strstr(svg, "not drawn"));
    free(svg);
    profile_free(fx.p);
}

static void test_flamegraph_escapes_the_title_and_bad_utf8(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t t = profile_thread(p, 1, 1, 0, NULL);
    uint32_t f[2] = {
        profile_frame(p, "bad\xff\xfe utf8 \xed\xa0\x80 surrogate", "", "", 0,
                      PROFILE_FRAME_PYTHON),
        profile_frame(p, "ctrl\x01\x1f and \xef\xbf\xbe nonchar", "", "", 0,
                      PROFILE_FRAME_SYNTH),
    };
    profile_add(p, t, f, 2, 1, 0);
    snprintf(p->meta.program, sizeof p->meta.program, "prog <&> \"quoted\" ]]> \xff");
    struct render_opts o = { 0 };
    char *svg = render_to_string(render_flamegraph, p, &o);
    assert_true(is_well_formed_xml(svg));
    assert_non_null(strstr(svg, "prog &lt;&amp;&gt; &quot;quoted&quot; ]]&gt; \xef\xbf\xbd"));
    assert_non_null(strstr(svg, "bad\xef\xbf\xbd\xef\xbf\xbd utf8"));
    free(svg);

    o.title = "custom & title";
    svg = render_to_string(render_flamegraph, p, &o);
    assert_non_null(strstr(svg, "<title>custom &amp; title</title>"));
    free(svg);
    profile_free(p);
}

static void test_flamegraph_prunes_narrow_frames(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t t = profile_thread(p, 1, 1, 0, NULL);
    uint32_t big = profile_frame(p, "big", "/b.py", "b.py", 1, PROFILE_FRAME_PYTHON);
    uint32_t tiny = profile_frame(p, "tiny", "/b.py", "b.py", 2, PROFILE_FRAME_PYTHON);
    uint32_t tinier = profile_frame(p, "tinier", "/b.py", "b.py", 3, PROFILE_FRAME_PYTHON);
    uint32_t stack[2] = { tiny, tinier };
    profile_add(p, t, &big, 1, 1000000, 0);
    profile_add(p, t, stack, 2, 1, 0);  /* 1e-6 of 1180 px: pruned with its child */
    struct render_opts o = { 0 };
    char *svg = render_to_string(render_flamegraph, p, &o);
    assert_true(is_well_formed_xml(svg));
    assert_non_null(strstr(svg, "2 frames narrower than 0.1 px not drawn"));
    assert_null(strstr(svg, "<title>tiny"));
    assert_non_null(strstr(svg, "<title>big"));
    free(svg);
    profile_free(p);
}

static void test_flamegraph_of_empty_profile(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    struct render_opts o = { 0 };
    char *svg = render_to_string(render_flamegraph, p, &o);
    assert_true(is_well_formed_xml(svg));
    assert_non_null(strstr(svg, "No samples"));
    free(svg);
    profile_free(p);
}

/* ---------------------------------------------------------------------------
 * speedscope.
 * ------------------------------------------------------------------------- */

static json_t *parse_json(const char *text)
{
    json_error_t error;
    json_t *root = json_loads(text, 0, &error);
    if (root == NULL)
        fail_msg("invalid JSON at line %d: %s", error.line, error.text);
    return root;
}

static double sum_weights(const json_t *profile)
{
    double sum = 0;
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(profile, "weights"), i, w)
        sum += json_number_value(w);
    return sum;
}

static void test_speedscope_structure(void **state)
{
    (void)state;
    struct fixture fx = make_fixture();
    struct render_opts o = { 0 };
    char *text = render_to_string(render_speedscope, fx.p, &o);
    json_t *root = parse_json(text);

    assert_string_equal(json_string_value(json_object_get(root, "$schema")),
                        "https://www.speedscope.app/file-format-schema.json");
    assert_string_equal(json_string_value(json_object_get(root, "exporter")), "pyrometer");
    assert_string_equal(json_string_value(json_object_get(root, "name")),
                        "python3 app.py --flag");
    assert_int_equal(json_integer_value(json_object_get(root, "activeProfileIndex")), 0);

    json_t *frames = json_object_get(json_object_get(root, "shared"), "frames");
    assert_int_equal(json_array_size(frames), fx.p->nframes);
    json_t *main_frame = json_array_get(frames, fx.main_f);
    assert_string_equal(json_string_value(json_object_get(main_frame, "name")), "main");
    assert_string_equal(json_string_value(json_object_get(main_frame, "file")), "app.py");
    assert_int_equal(json_integer_value(json_object_get(main_frame, "line")), 10);
    json_t *nasty = json_array_get(frames, fx.nasty_f);
    assert_string_equal(json_string_value(json_object_get(nasty, "name")), NASTY_NAME);
    assert_null(json_object_get(nasty, "line"));  /* line 0: unknown, omitted */
    assert_string_equal(json_string_value(json_object_get(json_array_get(frames, fx.unicode_f),
                                                          "name")), "fünction_λ");
    json_t *native = json_array_get(frames, fx.native_f);
    assert_string_equal(json_string_value(json_object_get(native, "name")), "日本");
    assert_null(json_object_get(native, "file"));

    json_t *profiles = json_object_get(root, "profiles");
    assert_int_equal(json_array_size(profiles), 2);
    json_t *t1 = json_array_get(profiles, 0), *t2 = json_array_get(profiles, 1);
    assert_string_equal(json_string_value(json_object_get(t1, "name")),
                        "Thread 1001 MainThread");
    assert_string_equal(json_string_value(json_object_get(t2, "name")), "Thread 1002");
    for (size_t i = 0; i < 2; i++) {
        json_t *prof = json_array_get(profiles, i);
        assert_string_equal(json_string_value(json_object_get(prof, "type")), "sampled");
        assert_string_equal(json_string_value(json_object_get(prof, "unit")), "seconds");
        assert_int_equal(json_array_size(json_object_get(prof, "samples")),
                         json_array_size(json_object_get(prof, "weights")));
        assert_float_equal(json_number_value(json_object_get(prof, "startValue")), 0, 1e-12);
        assert_float_equal(json_number_value(json_object_get(prof, "endValue")),
                           sum_weights(prof), 1e-9);
    }
    /* thread 1: 5 samples at 100 Hz; runs mwl x2, mw x1, mwl x1, mu x1 */
    assert_float_equal(sum_weights(t1), 0.05, 1e-9);
    assert_float_equal(sum_weights(t2), 0.05, 1e-9);
    json_t *t1_samples = json_object_get(t1, "samples");
    assert_int_equal(json_array_size(t1_samples), 4);
    assert_float_equal(json_number_value(json_array_get(json_object_get(t1, "weights"), 0)),
                       0.02, 1e-12);
    json_t *first = json_array_get(t1_samples, 0);  /* root first */
    assert_int_equal(json_array_size(first), 3);
    assert_int_equal(json_integer_value(json_array_get(first, 0)), fx.main_f);
    assert_int_equal(json_integer_value(json_array_get(first, 1)), fx.work_f);
    assert_int_equal(json_integer_value(json_array_get(first, 2)), fx.leaf_f);
    json_t *last = json_array_get(t1_samples, 3);
    assert_int_equal(json_integer_value(json_array_get(last, 1)), fx.unicode_f);

    json_decref(root);
    free(text);
    profile_free(fx.p);
}

static void test_speedscope_edge_cases(void **state)
{
    (void)state;
    /* no samples: still a loadable file */
    struct profile *p = profile_new();
    struct render_opts o = { 0 };
    char *text = render_to_string(render_speedscope, p, &o);
    json_t *root = parse_json(text);
    assert_int_equal(json_array_size(json_object_get(root, "profiles")), 1);
    json_decref(root);
    free(text);

    /* unknown rate: counts; several processes: named; bad UTF-8 replaced;
     * the busiest thread is shown first */
    uint32_t a = profile_thread(p, 10, 1, 0, "one");
    uint32_t b = profile_thread(p, 11, 1, 0, "two");
    uint32_t f = profile_frame(p, "bad\xff", "/x.py", "x.py", 1, PROFILE_FRAME_PYTHON);
    profile_add(p, a, &f, 1, 2, 0);
    profile_add(p, b, &f, 1, 5, 0);
    text = render_to_string(render_speedscope, p, &o);
    root = parse_json(text);
    json_t *profiles = json_object_get(root, "profiles");
    assert_int_equal(json_array_size(profiles), 2);
    json_t *second = json_array_get(profiles, 1);
    assert_string_equal(json_string_value(json_object_get(second, "unit")), "none");
    assert_string_equal(json_string_value(json_object_get(second, "name")),
                        "Process 11 Thread 1 two");
    assert_int_equal(json_integer_value(json_object_get(second, "endValue")), 5);
    assert_int_equal(json_integer_value(json_object_get(root, "activeProfileIndex")), 1);
    json_t *frame = json_array_get(json_object_get(json_object_get(root, "shared"), "frames"),
                                   f);
    assert_string_equal(json_string_value(json_object_get(frame, "name")), "bad\xef\xbf\xbd");
    json_decref(root);
    free(text);
    profile_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_render_profile_dispatches),
        cmocka_unit_test(test_write_errors_are_reported),
        cmocka_unit_test(test_collapsed_exact),
        cmocka_unit_test(test_collapsed_sanitises_separators),
        cmocka_unit_test(test_flamegraph_is_well_formed_and_complete),
        cmocka_unit_test(test_flamegraph_escapes_the_title_and_bad_utf8),
        cmocka_unit_test(test_flamegraph_prunes_narrow_frames),
        cmocka_unit_test(test_flamegraph_of_empty_profile),
        cmocka_unit_test(test_speedscope_structure),
        cmocka_unit_test(test_speedscope_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
