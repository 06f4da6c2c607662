/*
 * test_layouts.c — the generated per-version layout tables (layouts_gen.c).
 *
 * Checks that py_layout_for finds exactly 2.7 and 3.6–3.12, that the generated array
 * agrees with it, and invariants every CPython layout must satisfy: the
 * PyObject header is where it always is, fields a version has are set, fields
 * it lacks are PY_OFF_NONE, and distinct members have distinct offsets.
 * Does not check exact offsets: those come from the headers, not from here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "python/layout.h"

static void test_lookup_known_versions(void **state)
{
    (void)state;
    for (int minor = 6; minor <= 12; minor++) {
        const struct py_layout *layout = py_layout_for(3, minor);
        assert_non_null(layout);
        assert_int_equal(layout->major, 3);
        assert_int_equal(layout->minor, minor);
    }
    const struct py_layout *layout = py_layout_for(2, 7);
    assert_non_null(layout);
    assert_int_equal(layout->major, 2);
    assert_int_equal(layout->minor, 7);
}

static void test_lookup_unknown_versions(void **state)
{
    (void)state;
    assert_null(py_layout_for(3, 5));
    assert_null(py_layout_for(3, 13));
    assert_null(py_layout_for(2, 6));
    assert_null(py_layout_for(2, 8));
    assert_null(py_layout_for(3, 27));
    assert_null(py_layout_for(4, 8));
    assert_null(py_layout_for(0, 0));
}

static void test_generated_array_matches_lookup(void **state)
{
    (void)state;
    size_t count = 0;
    for (size_t i = 0; py_generated_layouts[i] != NULL; i++) {
        const struct py_layout *layout = py_generated_layouts[i];
        assert_ptr_equal(py_layout_for(layout->major, layout->minor), layout);
        count++;
    }
    assert_int_equal(count, 8);
}

/* Fields every 3.x layout from 3.6 on has, and PEP 393 strings. */
static void check_common3(const struct py_layout *l)
{
    assert_int_equal(l->bytes_sval, 32);
    assert_int_equal(l->unicode_length, 16);
    assert_int_equal(l->string_sval, PY_OFF_NONE);
    assert_int_not_equal(l->tstate_prev, PY_OFF_NONE);
    assert_int_not_equal(l->tstate_prev, l->tstate_next);
    assert_int_not_equal(l->unicode_legacy_data, PY_OFF_NONE);

    /* PEP 393 strings: the state word follows length and hash; compact
     * non-ASCII data follows the larger header. */
    assert_true(l->unicode_state > l->unicode_length);
    assert_true(l->unicode_state < l->unicode_ascii_size);
    assert_true(l->unicode_compact_size > l->unicode_ascii_size);
    assert_true(l->unicode_legacy_data >= l->unicode_compact_size);
}

/* 3.7+: _PyRuntime holds the interpreter list. */
static void check_runtime(const struct py_layout *l)
{
    assert_true(l->runtime_size > 0);
    assert_int_not_equal(l->runtime_finalizing, PY_OFF_NONE);
    assert_int_not_equal(l->runtime_interpreters_head, PY_OFF_NONE);
    assert_int_not_equal(l->interp_id, PY_OFF_NONE);
    assert_true(l->runtime_interpreters_head < l->runtime_size);
    assert_true(l->runtime_finalizing < l->runtime_size);
}

/* 2.7 and 3.6: no _PyRuntime, no interpreter ids; the list head and the GIL
 * are statics that locate.c finds in .symtab. */
static void check_no_runtime(const struct py_layout *l)
{
    assert_int_equal(l->runtime_size, PY_OFF_NONE);
    assert_int_equal(l->runtime_finalizing, PY_OFF_NONE);
    assert_int_equal(l->runtime_interpreters_head, PY_OFF_NONE);
    assert_int_equal(l->runtime_gil_locked, PY_OFF_NONE);
    assert_int_equal(l->runtime_gil_last_holder, PY_OFF_NONE);
    assert_int_equal(l->interp_gil_ptr, PY_OFF_NONE);
    assert_int_equal(l->gil_locked, PY_OFF_NONE);
    assert_int_equal(l->gil_last_holder, PY_OFF_NONE);
    assert_int_equal(l->interp_id, PY_OFF_NONE);
}

/* 2.7: names are PyStringObject, bytes is the same struct, no PEP 393, no
 * PyThreadState.prev. */
static void check_py27(const struct py_layout *l)
{
    assert_int_equal(l->major, 2);
    assert_int_equal(l->lines, PY_LINES_LNOTAB27);
    /* PyObject_VAR_HEAD (24), long ob_shash, int ob_sstate, then ob_sval */
    assert_int_equal(l->string_sval, 36);
    assert_int_equal(l->bytes_sval, l->string_sval);
    assert_int_equal(l->tstate_prev, PY_OFF_NONE);
    assert_int_equal(l->unicode_length, PY_OFF_NONE);
    assert_int_equal(l->unicode_state, PY_OFF_NONE);
    assert_int_equal(l->unicode_ascii_size, PY_OFF_NONE);
    assert_int_equal(l->unicode_compact_size, PY_OFF_NONE);
    assert_int_equal(l->unicode_legacy_data, PY_OFF_NONE);
}

/* Fields every layout (2.7, 3.6–3.12) has. */
static void check_common(const struct py_layout *l)
{
    assert_int_equal(l->ob_type, 8);
    assert_int_equal(l->ob_size, 16);

    assert_true(l->interp_size > 0);
    assert_true(l->tstate_size > 0);
    assert_true(l->code_size > 0);

    assert_int_not_equal(l->interp_next, PY_OFF_NONE);
    assert_int_not_equal(l->interp_threads_head, PY_OFF_NONE);
    assert_int_not_equal(l->interp_modules, PY_OFF_NONE);
    assert_int_not_equal(l->tstate_next, PY_OFF_NONE);
    assert_int_not_equal(l->tstate_interp, PY_OFF_NONE);
    assert_int_not_equal(l->tstate_frame, PY_OFF_NONE);
    assert_int_not_equal(l->tstate_thread_id, PY_OFF_NONE);
    assert_int_not_equal(l->code_filename, PY_OFF_NONE);
    assert_int_not_equal(l->code_name, PY_OFF_NONE);
    assert_int_not_equal(l->code_firstlineno, PY_OFF_NONE);
    assert_int_not_equal(l->code_linetable, PY_OFF_NONE);
    assert_int_not_equal(l->code_argcount, PY_OFF_NONE);
    assert_int_not_equal(l->code_varnames, PY_OFF_NONE);
    assert_int_not_equal(l->bytes_sval, PY_OFF_NONE);

    /* Distinct members have distinct offsets. */
    assert_int_not_equal(l->code_filename, l->code_name);
    assert_int_not_equal(l->code_name, l->code_linetable);
    assert_int_not_equal(l->code_filename, l->code_linetable);
    assert_int_not_equal(l->tstate_next, l->tstate_interp);
    assert_int_not_equal(l->interp_next, l->interp_threads_head);

    /* Offsets lie inside their structs. */
    assert_true(l->interp_threads_head < l->interp_size);
    assert_true(l->interp_modules < l->interp_size);
    assert_true(l->tstate_frame < l->tstate_size);
    assert_true(l->tstate_thread_id < l->tstate_size);
    assert_true(l->code_filename < l->code_size);
    assert_true(l->code_name < l->code_size);
    assert_true(l->code_linetable < l->code_size);

    if (l->major == 2)
        check_py27(l);
    else
        check_common3(l);
    if (l->major == 3 && l->minor >= 7)
        check_runtime(l);
    else
        check_no_runtime(l);
}

static void check_frame_object_era(const struct py_layout *l)
{
    assert_int_equal(l->frames, PY_FRAMES_OBJECT);
    assert_int_not_equal(l->frame_back, PY_OFF_NONE);
    assert_int_not_equal(l->frame_code, PY_OFF_NONE);
    assert_int_not_equal(l->frame_lasti, PY_OFF_NONE);
    assert_int_not_equal(l->frame_lineno, PY_OFF_NONE);
    assert_int_not_equal(l->frame_back, l->frame_code);
    assert_int_not_equal(l->code_code, PY_OFF_NONE);
    assert_true(l->code_code < l->code_size);

    assert_int_equal(l->tstate_native_thread_id, PY_OFF_NONE);
    assert_int_equal(l->cframe_current_frame, PY_OFF_NONE);
    assert_int_equal(l->iframe_size, PY_OFF_NONE);
    assert_int_equal(l->iframe_previous, PY_OFF_NONE);
    assert_int_equal(l->iframe_code, PY_OFF_NONE);
    assert_int_equal(l->iframe_instr, PY_OFF_NONE);
    assert_int_equal(l->iframe_owner, PY_OFF_NONE);
    assert_int_equal(l->iframe_localsplus, PY_OFF_NONE);
    assert_int_equal(l->code_qualname, PY_OFF_NONE);
    assert_int_equal(l->code_adaptive, PY_OFF_NONE);
}

static void check_cframe_era(const struct py_layout *l)
{
    assert_int_equal(l->frames, PY_FRAMES_CFRAME);
    assert_int_equal(l->lines, PY_LINES_LOCATIONS);
    assert_int_not_equal(l->cframe_current_frame, PY_OFF_NONE);
    assert_int_not_equal(l->tstate_native_thread_id, PY_OFF_NONE);
    assert_int_not_equal(l->tstate_native_thread_id, l->tstate_thread_id);

    assert_true(l->iframe_size > 0);
    assert_int_equal(l->iframe_localsplus, l->iframe_size);
    assert_int_not_equal(l->iframe_previous, PY_OFF_NONE);
    assert_int_not_equal(l->iframe_code, PY_OFF_NONE);
    assert_int_not_equal(l->iframe_instr, PY_OFF_NONE);
    assert_int_not_equal(l->iframe_owner, PY_OFF_NONE);
    assert_int_not_equal(l->iframe_code, l->iframe_previous);
    assert_int_not_equal(l->iframe_code, l->iframe_instr);
    assert_true(l->iframe_code < l->iframe_size);
    assert_true(l->iframe_previous < l->iframe_size);
    assert_true(l->iframe_instr < l->iframe_size);
    assert_true(l->iframe_owner < l->iframe_size);

    assert_int_not_equal(l->code_qualname, PY_OFF_NONE);
    assert_int_not_equal(l->code_qualname, l->code_name);
    assert_int_equal(l->code_adaptive, l->code_size);
    assert_int_equal(l->code_code, PY_OFF_NONE);

    assert_int_equal(l->frame_back, PY_OFF_NONE);
    assert_int_equal(l->frame_code, PY_OFF_NONE);
    assert_int_equal(l->frame_lasti, PY_OFF_NONE);
    assert_int_equal(l->frame_lineno, PY_OFF_NONE);
}

/* 3.7–3.11 keep the GIL in _PyRuntime; 3.12 behind interp->ceval.gil;
 * 2.7 and 3.6 in statics (check_no_runtime). */
static void check_gil(const struct py_layout *l)
{
    if (l->major == 2 || l->minor < 7)
        return;
    if (l->minor <= 11) {
        assert_int_not_equal(l->runtime_gil_locked, PY_OFF_NONE);
        assert_int_not_equal(l->runtime_gil_last_holder, PY_OFF_NONE);
        assert_int_not_equal(l->runtime_gil_locked, l->runtime_gil_last_holder);
        assert_true(l->runtime_gil_locked < l->runtime_size);
        assert_int_equal(l->interp_gil_ptr, PY_OFF_NONE);
        assert_int_equal(l->gil_locked, PY_OFF_NONE);
        assert_int_equal(l->gil_last_holder, PY_OFF_NONE);
    } else {
        assert_int_equal(l->runtime_gil_locked, PY_OFF_NONE);
        assert_int_equal(l->runtime_gil_last_holder, PY_OFF_NONE);
        assert_int_not_equal(l->interp_gil_ptr, PY_OFF_NONE);
        assert_true(l->interp_gil_ptr < l->interp_size);
        assert_int_not_equal(l->gil_locked, PY_OFF_NONE);
        assert_int_not_equal(l->gil_last_holder, PY_OFF_NONE);
        assert_int_not_equal(l->gil_locked, l->gil_last_holder);
    }
}

static void test_invariants(void **state)
{
    (void)state;
    for (size_t i = 0; py_generated_layouts[i] != NULL; i++) {
        const struct py_layout *l = py_generated_layouts[i];
        check_common(l);
        check_gil(l);
        if (l->major == 2 || l->minor <= 10)
            check_frame_object_era(l);
        else
            check_cframe_era(l);
    }
}

static void test_line_table_kinds(void **state)
{
    (void)state;
    assert_int_equal(py_layout_for(2, 7)->lines, PY_LINES_LNOTAB27);
    assert_int_equal(py_layout_for(3, 6)->lines, PY_LINES_LNOTAB);
    assert_int_equal(py_layout_for(3, 7)->lines, PY_LINES_LNOTAB);
    assert_int_equal(py_layout_for(3, 8)->lines, PY_LINES_LNOTAB);
    assert_int_equal(py_layout_for(3, 9)->lines, PY_LINES_LNOTAB);
    assert_int_equal(py_layout_for(3, 10)->lines, PY_LINES_LINETABLE310);
    assert_int_equal(py_layout_for(3, 11)->lines, PY_LINES_LOCATIONS);
    assert_int_equal(py_layout_for(3, 12)->lines, PY_LINES_LOCATIONS);
}

/* A few facts that have been stable and are widely known; a regression
 * here means the generator read the wrong member. */
static void test_known_offsets(void **state)
{
    (void)state;
    assert_int_equal(py_layout_for(3, 10)->tstate_frame, 24);
    assert_int_equal(py_layout_for(3, 11)->tstate_frame, 56);
    assert_int_equal(py_layout_for(3, 11)->cframe_current_frame, 8);
    assert_int_equal(py_layout_for(3, 12)->cframe_current_frame, 0);
    assert_int_equal(py_layout_for(3, 12)->iframe_code, 0);
    assert_int_equal(py_layout_for(3, 12)->unicode_ascii_size, 40);
    assert_int_equal(py_layout_for(3, 11)->unicode_ascii_size, 48);
    /* 2.7's PyThreadState starts next, interp, frame (no prev) */
    assert_int_equal(py_layout_for(2, 7)->tstate_next, 0);
    assert_int_equal(py_layout_for(2, 7)->tstate_frame, 16);
    assert_int_equal(py_layout_for(3, 6)->tstate_frame, 24);
    assert_int_equal(py_layout_for(3, 7)->tstate_frame, 24);
    /* PyInterpreterState starts next, tstate_head in every version here */
    assert_int_equal(py_layout_for(3, 6)->interp_threads_head, 8);
    /* 3.7: _PyRuntimeState starts int initialized, int core_initialized,
     * finalizing, then interpreters { mutex, head, ... } */
    assert_int_equal(py_layout_for(3, 7)->runtime_finalizing, 8);
    assert_int_equal(py_layout_for(3, 7)->runtime_interpreters_head, 24);
    /* 2.7's frame keeps f_exc_* and f_tstate before f_lasti */
    assert_true(py_layout_for(2, 7)->frame_lasti > py_layout_for(3, 7)->frame_lasti);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_known_versions),
        cmocka_unit_test(test_lookup_unknown_versions),
        cmocka_unit_test(test_generated_array_matches_lookup),
        cmocka_unit_test(test_invariants),
        cmocka_unit_test(test_line_table_kinds),
        cmocka_unit_test(test_known_offsets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
