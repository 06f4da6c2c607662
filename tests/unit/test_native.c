/*
 * test_native.c — merging native and Python frames (sample/native.h).
 *
 * Synthetic stacks shaped like the real ones of each interpreter family:
 *   3.8-3.10  one _PyEval_EvalFrameDefault per Python frame, every frame an
 *             entry, with call plumbing between them;
 *   3.11+     one eval frame per C-level call, several Python frames each
 *             (entry marks the first frame of each call), a C extension
 *             calling back into Python in between;
 *   2.7/3.5   PyEval_EvalFrameEx is the loop; 3.6+ it only wraps the loop;
 *   LTO       `_PyEval_EvalFrameDefault.cold`, `call_function.constprop.0`.
 * Then the failure cases: eval frames and entry runs disagree (torn), the
 * outermost Python frame is not an entry, a partial native stack, a cap
 * smaller than the stack.  Every expected stack is spelled out in full.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sample/native.h"

#define LIBPY "/opt/py/lib/libpython3.12.so.1.0"
#define EXE "/opt/py/bin/python3.12"
#define LIBC "/lib/x86_64-linux-gnu/libc.so.6"
#define EXT "/tmp/native_ext.cpython-312-x86_64-linux-gnu.so"
#define LIBZ "/lib/x86_64-linux-gnu/libz.so.1"

static struct py_code CODES[] = {
    {0x1000, "<module>", "/app/main.py", 1},
    {0x2000, "main", "/app/main.py", 10},
    {0x3000, "call_c", "/app/main.py", 20},
    {0x4000, "callback", "/app/main.py", 30},
    {0x5000, "inner", "/app/main.py", 40},
    {0x6000, "gen", "/app/main.py", 50},
};
enum { MODULE, MAIN, CALL_C, CALLBACK, INNER, GEN };

static struct native_frame nf(const char *name, const char *module)
{
    static uint64_t ip = 0x400000;
    struct native_frame f = {ip += 0x10, name, module, 0};
    return f;
}

static struct py_frame pf(int code, int line, int entry)
{
    struct py_frame f = {&CODES[code], line, 0x7000 + (uint64_t)code * 0x100, entry};
    return f;
}

/* "N:name" / "P:name:line" per frame, joined with " ; " */
static void describe(const struct merged_frame *m, size_t n, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < cap; i++) {
        int w;
        if (m[i].kind == MERGED_PYTHON)
            w = snprintf(out + used, cap - used, "%sP:%s:%d", i ? " ; " : "", m[i].name,
                         m[i].line);
        else
            w = snprintf(out + used, cap - used, "%sN:%s", i ? " ; " : "", m[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static void expect_merge(const struct native_frame *native, size_t n_native,
                         const struct py_frame *py, size_t n_py, unsigned flags,
                         const char *expected)
{
    struct merged_frame out[64];
    size_t n = 0;
    struct pm_error err = {0};
    int rc = native_merge(native, n_native, py, n_py, flags, out, 64, &n, &err);
    if (rc != 0)
        fail_msg("native_merge returned %d: %s", rc, err.msg);
    char got[4096];
    describe(out, n, got, sizeof got);
    assert_string_equal(got, expected);
}

#define COUNT(a) (sizeof(a) / sizeof *(a))

/* 3.8: every Python call is a C call through the plumbing. */
static void test_merge_38_one_eval_per_frame(void **state)
{
    (void)state;
    struct native_frame native[] = {
        nf("spin", EXT),
        nf("cfunction_vectorcall_O", LIBPY),
        nf("_PyEval_EvalFrameDefault", LIBPY),       /* call_c */
        nf("function_code_fastcall", LIBPY),
        nf("_PyFunction_Vectorcall", LIBPY),
        nf("call_function", LIBPY),
        nf("_PyEval_EvalFrameDefault", LIBPY),       /* main */
        nf("_PyEval_EvalCodeWithName", LIBPY),
        nf("_PyFunction_Vectorcall", LIBPY),
        nf("_PyEval_EvalFrameDefault", LIBPY),       /* <module> */
        nf("_PyEval_EvalCodeWithName", LIBPY),
        nf("PyEval_EvalCode", LIBPY),
        nf("run_mod", LIBPY),
        nf("pymain_run_python", LIBPY),
        nf("Py_BytesMain", LIBPY),
        nf("__libc_start_main", LIBC),
        nf("_start", EXE),
    };
    struct py_frame py[] = {pf(CALL_C, 21, 1), pf(MAIN, 11, 1), pf(MODULE, 2, 1)};
    expect_merge(native, COUNT(native), py, COUNT(py), 0,
                 "N:spin ; P:call_c:21 ; P:main:11 ; P:<module>:2");
    expect_merge(native, COUNT(native), py, COUNT(py), NATIVE_MERGE_ALL,
                 "N:spin ; N:cfunction_vectorcall_O ; P:call_c:21 ; N:function_code_fastcall ; "
                 "N:_PyFunction_Vectorcall ; N:call_function ; P:main:11 ; "
                 "N:_PyEval_EvalCodeWithName ; N:_PyFunction_Vectorcall ; P:<module>:2 ; "
                 "N:_PyEval_EvalCodeWithName ; N:PyEval_EvalCode ; N:run_mod ; "
                 "N:pymain_run_python ; N:Py_BytesMain ; N:__libc_start_main ; N:_start");
}

/* 3.11/3.12: one eval call runs several Python frames; a C extension calls
 * back into Python, which starts a second eval call. */
static void test_merge_312_several_frames_per_eval(void **state)
{
    (void)state;
    struct native_frame native[] = {
        nf("deflate_slow", LIBZ),
        nf("deflate", LIBZ),
        nf("zlib_compress", EXT),
        nf("cfunction_vectorcall_FASTCALL_KEYWORDS", LIBPY),
        nf("_PyEval_EvalFrameDefault", LIBPY),       /* inner, callback */
        nf("_PyEval_Vector", LIBPY),
        nf("_PyFunction_Vectorcall", LIBPY),
        nf("PyObject_CallOneArg", LIBPY),
        nf("ext_call_back", EXT),
        nf(NULL, EXT),                               /* unnamed, not interpreter: kept */
        nf("cfunction_vectorcall_O", LIBPY),
        nf(NULL, LIBPY),                             /* unnamed, interpreter: hidden */
        nf("_PyEval_EvalFrameDefault", LIBPY),       /* call_c, main, <module> */
        nf("PyEval_EvalCode", LIBPY),
        nf("Py_RunMain", LIBPY),
        nf("main", EXE),
    };
    struct py_frame py[] = {
        pf(INNER, 41, 0), pf(CALLBACK, 31, 1),
        pf(CALL_C, 22, 0), pf(MAIN, 12, 0), pf(MODULE, 3, 1),
    };
    expect_merge(native, COUNT(native), py, COUNT(py), 0,
                 "N:deflate_slow ; N:deflate ; N:zlib_compress ; P:inner:41 ; P:callback:31 ; "
                 "N:ext_call_back ; N:[unknown] ; P:call_c:22 ; P:main:12 ; P:<module>:3");
    expect_merge(native, COUNT(native), py, COUNT(py), NATIVE_MERGE_ALL,
                 "N:deflate_slow ; N:deflate ; N:zlib_compress ; "
                 "N:cfunction_vectorcall_FASTCALL_KEYWORDS ; P:inner:41 ; P:callback:31 ; "
                 "N:_PyEval_Vector ; N:_PyFunction_Vectorcall ; N:PyObject_CallOneArg ; "
                 "N:ext_call_back ; N:[unknown] ; N:cfunction_vectorcall_O ; N:[unknown] ; "
                 "P:call_c:22 ; P:main:12 ; P:<module>:3 ; N:PyEval_EvalCode ; "
                 "N:Py_RunMain ; N:main");
}

/* The Debian build: libpython linked into the executable, static functions
 * stripped (no name): only the exported ones show, plumbing hidden. */
static void test_merge_static_interpreter(void **state)
{
    (void)state;
    struct native_frame native[] = {
        nf(NULL, LIBZ),
        nf("deflate", LIBZ),
        nf(NULL, EXE),                               /* zlib_compress, stripped */
        nf(NULL, EXE),                               /* cfunction_vectorcall_*, stripped */
        nf("PyObject_Vectorcall", EXE),
        nf("_PyEval_EvalFrameDefault", EXE),
        nf("PyEval_EvalCode", EXE),
        nf(NULL, EXE),
        nf("Py_BytesMain", EXE),
        nf("__libc_start_main", LIBC),
    };
    struct py_frame py[] = {pf(CALL_C, 23, 0), pf(MAIN, 13, 0), pf(MODULE, 4, 1)};
    expect_merge(native, COUNT(native), py, COUNT(py), 0,
                 "N:[unknown] ; N:deflate ; P:call_c:23 ; P:main:13 ; P:<module>:4");
}

/* Wrappers: PyEval_EvalFrameEx calling the loop is one call (3.6+); alone
 * it is the loop (2.7).  Compiler suffixes name the same function. */
static void test_merge_wrappers_and_suffixes(void **state)
{
    (void)state;
    struct native_frame modern[] = {
        nf("_PyEval_EvalFrameDefault.cold", LIBPY),  /* gen */
        nf("PyEval_EvalFrameEx", LIBPY),
        nf("gen_send_ex", LIBPY),
        nf("gen_iternext", LIBPY),
        nf("builtin_sum", LIBPY),                    /* a real builtin: kept */
        nf("call_function.constprop.0", LIBPY),
        nf("_PyEval_EvalFrameDefault", LIBPY),       /* main */
        nf("main", EXE),
    };
    struct py_frame py[] = {pf(GEN, 51, 1), pf(MAIN, 14, 1)};
    expect_merge(modern, COUNT(modern), py, COUNT(py), 0,
                 "P:gen:51 ; N:builtin_sum ; P:main:14");

    struct native_frame old[] = {
        nf("PyEval_EvalFrameEx", LIBPY),             /* gen: the loop itself */
        nf("gen_send_ex", LIBPY),
        nf("builtin_sum", LIBPY),
        nf("call_function", LIBPY),
        nf("PyEval_EvalFrameEx", LIBPY),             /* main */
        nf("PyEval_EvalCodeEx", LIBPY),
        nf("main", EXE),
    };
    expect_merge(old, COUNT(old), py, COUNT(py), 0, "P:gen:51 ; N:builtin_sum ; P:main:14");
}

/* Plumbing names only hide frames of the interpreter's own module. */
static void test_merge_plumbing_name_elsewhere_kept(void **state)
{
    (void)state;
    struct native_frame native[] = {
        nf("call_function", EXT),
        nf("PyObject_Call", LIBPY),
        nf("_PyEval_EvalFrameDefault", LIBPY),
    };
    struct py_frame py[] = {pf(MAIN, 15, 1)};
    expect_merge(native, COUNT(native), py, COUNT(py), 0, "N:call_function ; P:main:15");
}

/* No Python at all (a C thread): every native frame, nothing hidden. */
static void test_merge_no_python(void **state)
{
    (void)state;
    struct native_frame native[] = {
        nf("__futex_abstimed_wait_common", LIBC),
        nf(NULL, LIBC),
        nf("worker", EXT),
        nf("start_thread", LIBC),
        nf("clone3", LIBC),
    };
    expect_merge(native, COUNT(native), NULL, 0, 0,
                 "N:__futex_abstimed_wait_common ; N:[unknown] ; N:worker ; N:start_thread ; "
                 "N:clone3");
}

static void expect_torn(const struct native_frame *native, size_t n_native,
                        const struct py_frame *py, size_t n_py, unsigned flags)
{
    struct merged_frame out[64];
    size_t n = 99;
    struct pm_error err = {0};
    assert_int_equal(native_merge(native, n_native, py, n_py, flags, out, 64, &n, &err), -1);
    assert_int_equal(err.code, PM_ETORN);
    assert_true(strlen(err.msg) > 0);
}

static void test_merge_torn(void **state)
{
    (void)state;
    struct native_frame two_evals[] = {
        nf("_PyEval_EvalFrameDefault", LIBPY),
        nf("PyObject_Call", LIBPY),
        nf("_PyEval_EvalFrameDefault", LIBPY),
    };
    /* three entry runs, two eval frames */
    struct py_frame three[] = {pf(INNER, 1, 1), pf(CALL_C, 2, 1), pf(MAIN, 3, 1)};
    expect_torn(two_evals, COUNT(two_evals), three, COUNT(three), 0);
    /* one entry run, two eval frames: torn even for a partial native stack */
    struct py_frame one[] = {pf(CALL_C, 2, 0), pf(MAIN, 3, 1)};
    expect_torn(two_evals, COUNT(two_evals), one, COUNT(one), NATIVE_MERGE_PARTIAL);
    /* Python frames but no eval frame */
    struct native_frame none[] = {nf("spin", EXT), nf("main", EXE)};
    expect_torn(none, COUNT(none), one, COUNT(one), 0);
    /* the outermost Python frame is not an entry frame */
    struct py_frame open_end[] = {pf(CALL_C, 2, 1), pf(MAIN, 3, 0)};
    expect_torn(two_evals, COUNT(two_evals), open_end, COUNT(open_end), 0);
}

/* A native stack that stopped early: outer Python calls go on top. */
static void test_merge_partial_native(void **state)
{
    (void)state;
    struct native_frame native[] = {
        nf("spin", EXT),
        nf("_PyEval_EvalFrameDefault", LIBPY),
        nf("PyObject_Call", LIBPY),
    };
    struct py_frame py[] = {pf(CALL_C, 24, 1), pf(MAIN, 16, 1), pf(MODULE, 5, 1)};
    expect_torn(native, COUNT(native), py, COUNT(py), 0);
    expect_merge(native, COUNT(native), py, COUNT(py), NATIVE_MERGE_PARTIAL,
                 "N:spin ; P:call_c:24 ; P:main:16 ; P:<module>:5");
}

/* cap smaller than the merged stack: the innermost frames, and 1. */
static void test_merge_cap(void **state)
{
    (void)state;
    struct native_frame native[] = {
        nf("spin", EXT),
        nf("_PyEval_EvalFrameDefault", LIBPY),
    };
    struct py_frame py[] = {pf(CALL_C, 25, 0), pf(MAIN, 17, 0), pf(MODULE, 6, 1)};
    struct merged_frame out[2];
    size_t n = 0;
    struct pm_error err = {0};
    assert_int_equal(native_merge(native, 2, py, 3, 0, out, 2, &n, &err), 1);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].kind, MERGED_NATIVE);
    assert_string_equal(out[0].name, "spin");
    assert_string_equal(out[0].filename, EXT);
    assert_int_equal(out[0].line, -1);
    assert_int_equal(out[0].index, 0);
    assert_int_equal(out[0].ip, native[0].ip);
    assert_int_equal(out[1].kind, MERGED_PYTHON);
    assert_string_equal(out[1].name, "call_c");
    assert_string_equal(out[1].filename, "/app/main.py");
    assert_int_equal(out[1].line, 25);
    assert_int_equal(out[1].index, 0);
    /* cap 0 */
    assert_int_equal(native_merge(native, 2, py, 3, 0, out, 0, &n, &err), 1);
    assert_int_equal(n, 0);
}

static void test_symbol_classes(void **state)
{
    (void)state;
    assert_true(native_is_eval_symbol("_PyEval_EvalFrameDefault"));
    assert_true(native_is_eval_symbol("_PyEval_EvalFrameDefault.cold"));
    assert_true(native_is_eval_symbol("PyEval_EvalFrameEx"));
    assert_false(native_is_eval_symbol("_PyEval_EvalFrameDefaultX"));
    assert_false(native_is_eval_symbol("_PyEval_Vector"));
    assert_false(native_is_eval_symbol(NULL));
    assert_true(native_is_plumbing_symbol("cfunction_vectorcall_FASTCALL_KEYWORDS"));
    assert_true(native_is_plumbing_symbol("method_vectorcall_O"));
    assert_true(native_is_plumbing_symbol("_PyObject_MakeTpCall"));
    assert_true(native_is_plumbing_symbol("slot_tp_call"));
    assert_true(native_is_plumbing_symbol("call_function.lto_priv.0"));
    assert_false(native_is_plumbing_symbol("builtin_sorted"));
    assert_false(native_is_plumbing_symbol("zlib_compress"));
    assert_false(native_is_plumbing_symbol("call_functions"));
    assert_false(native_is_plumbing_symbol("take_gil"));
    assert_false(native_is_plumbing_symbol(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_38_one_eval_per_frame),
        cmocka_unit_test(test_merge_312_several_frames_per_eval),
        cmocka_unit_test(test_merge_static_interpreter),
        cmocka_unit_test(test_merge_wrappers_and_suffixes),
        cmocka_unit_test(test_merge_plumbing_name_elsewhere_kept),
        cmocka_unit_test(test_merge_no_python),
        cmocka_unit_test(test_merge_torn),
        cmocka_unit_test(test_merge_partial_native),
        cmocka_unit_test(test_merge_cap),
        cmocka_unit_test(test_symbol_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
