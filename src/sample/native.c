/*
 * native.c — merging a thread's native frames with its Python frames.
 *
 * The rule and what is hidden are described in native.h.  Symbols are
 * compared by their base name: a compiler suffix after the first '.'
 * (`_PyEval_EvalFrameDefault.cold`, `call_function.constprop.0`,
 * `foo.isra.0`, `foo.lto_priv.0`) names the same function.
 * Never reads memory, never prints, never allocates.
 */
#include "native.h"

#include <string.h>

/* The eval loop in every version we read (3.6+ call it through
 * PyEval_EvalFrameEx / _PyEval_EvalFrame, which are then wrappers). */
static const char *const EVAL_LOOP = "_PyEval_EvalFrameDefault";
/* The loop itself before 3.6; thin wrappers around EVAL_LOOP after. */
static const char *const EVAL_WRAPPERS[] = {"PyEval_EvalFrameEx", "_PyEval_EvalFrame",
                                            "PyEval_EvalFrame"};

/* Interpreter call plumbing: the frames between a Python call site and the
 * callee (or between C and a Python function it calls). */
static const char *const PLUMBING[] = {
    "_PyEval_EvalFrame", "PyEval_EvalFrameEx", "PyEval_EvalFrame", "_PyEval_EvalCode",
    "_PyEval_EvalCodeWithName", "PyEval_EvalCode", "PyEval_EvalCodeEx", "_PyEval_Vector",
    "_PyFunction_Vectorcall", "_PyFunction_FastCallDict", "_PyFunction_FastCallKeywords",
    "_PyFunction_FastCall", "function_code_fastcall", "fast_function",
    "_PyObject_Vectorcall", "_PyObject_VectorcallTstate", "PyObject_Vectorcall",
    "PyObject_VectorcallDict", "_PyObject_VectorcallDictTstate", "PyObject_VectorcallMethod",
    "_PyObject_FastCall", "_PyObject_FastCallDict", "_PyObject_FastCallKeywords",
    "_PyObject_FastCallTstate", "_PyObject_FastCallDictTstate", "_PyObject_FastCall_Prepend",
    "_PyObject_Call", "PyObject_Call", "PyObject_CallObject", "_PyObject_Call_Prepend",
    "_PyObject_CallFunctionVa", "PyObject_CallFunction", "PyObject_CallFunctionObjArgs",
    "PyObject_CallMethod", "PyObject_CallMethodObjArgs", "_PyObject_CallMethodIdObjArgs",
    "_PyObject_CallMethodId", "PyObject_CallOneArg", "PyObject_CallNoArgs",
    "_PyObject_CallNoArg", "_PyObject_CallNoArgs", "_PyObject_CallNoArgsTstate",
    "_PyObject_CallOneArg", "PyObject_CallMethodOneArg", "PyObject_CallMethodNoArgs",
    "_PyObject_MakeTpCall", "object_vacall", "callmethod", "call_function", "do_call",
    "do_call_core", "PyEval_CallObjectWithKeywords",
    "ext_do_call", "type_call", "vectorcall_method", "vectorcall_unbound", "call_method",
    "call_unbound", "call_unbound_noarg", "method_vectorcall", "methoddescr_call",
    "wrapperdescr_call", "wrapper_call", "classmethoddescr_call", "method_call",
    "instancemethod_call", "cfunction_call", "cfunction_call_varargs",
    "_PyCFunction_FastCallKeywords", "_PyCFunction_FastCallDict", "PyCFunction_Call",
    "_PyMethodDef_RawFastCallKeywords", "_PyMethodDef_RawFastCallDict",
    "_PyMethodDescr_FastCallKeywords", "gen_send_ex", "gen_send_ex2", "gen_iternext",
    "gen_send", "_PyGen_Send", "PyIter_Send",
};
static const char *const PLUMBING_PREFIXES[] = {
    "cfunction_vectorcall_", "method_vectorcall_", "slot_tp_", "slot_nb_", "slot_sq_",
    "slot_mp_", "pymain_", "_PyRun_", "PyRun_", "pyrun_",
};

#define MAX_INTERP_MODULES 8

/* name equals word, up to a '.' compiler suffix */
static int base_equals(const char *name, const char *word)
{
    size_t n = strlen(word);
    return strncmp(name, word, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

static int is_wrapper(const char *name)
{
    for (size_t i = 0; i < sizeof EVAL_WRAPPERS / sizeof *EVAL_WRAPPERS; i++)
        if (base_equals(name, EVAL_WRAPPERS[i]))
            return 1;
    return 0;
}

int native_is_eval_symbol(const char *name)
{
    return name != NULL && (base_equals(name, EVAL_LOOP) || is_wrapper(name));
}

int native_is_plumbing_symbol(const char *name)
{
    if (name == NULL)
        return 0;
    for (size_t i = 0; i < sizeof PLUMBING / sizeof *PLUMBING; i++)
        if (base_equals(name, PLUMBING[i]))
            return 1;
    for (size_t i = 0; i < sizeof PLUMBING_PREFIXES / sizeof *PLUMBING_PREFIXES; i++)
        if (strncmp(name, PLUMBING_PREFIXES[i], strlen(PLUMBING_PREFIXES[i])) == 0)
            return 1;
    return 0;
}

/* Does native[i] stand for one C-level eval call?  The loop always does; a
 * wrapper only when it does not just call the loop (it is the loop itself,
 * as before 3.6). */
static int is_eval_frame(const struct native_frame *native, size_t i)
{
    const char *name = native[i].name;
    if (name == NULL)
        return 0;
    if (base_equals(name, EVAL_LOOP))
        return 1;
    if (!is_wrapper(name))
        return 0;
    return i == 0 || !native_is_eval_symbol(native[i - 1].name);
}

struct interp_modules {
    const char *paths[MAX_INTERP_MODULES];
    size_t count;
};

static int same_module(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int in_interp(const struct interp_modules *m, const char *module)
{
    if (module == NULL)
        return 0;
    for (size_t i = 0; i < m->count; i++)
        if (same_module(m->paths[i], module))
            return 1;
    return 0;
}

static void emit_python(const struct py_frame *py, size_t i, struct merged_frame *out,
                        size_t cap, size_t *n_out, int *truncated)
{
    if (*n_out == cap) {
        *truncated = 1;
        return;
    }
    struct merged_frame *m = &out[(*n_out)++];
    m->kind = MERGED_PYTHON;
    m->name = py[i].code && py[i].code->name ? py[i].code->name : "<unknown>";
    m->filename = py[i].code && py[i].code->filename ? py[i].code->filename : "";
    m->line = py[i].line;
    m->index = i;
    m->ip = 0;
}

static void emit_native(const struct native_frame *native, size_t i, struct merged_frame *out,
                        size_t cap, size_t *n_out, int *truncated)
{
    if (*n_out == cap) {
        *truncated = 1;
        return;
    }
    struct merged_frame *m = &out[(*n_out)++];
    m->kind = MERGED_NATIVE;
    m->name = native[i].name ? native[i].name : "[unknown]";
    m->filename = native[i].module ? native[i].module : "";
    m->line = -1;
    m->index = i;
    m->ip = native[i].ip;
}

int native_merge(const struct native_frame *native, size_t n_native, const struct py_frame *py,
                 size_t n_py, unsigned flags, struct merged_frame *out, size_t cap,
                 size_t *n_out, struct pm_error *err)
{
    *n_out = 0;
    int show_all = (flags & NATIVE_MERGE_ALL) != 0;
    int partial = (flags & NATIVE_MERGE_PARTIAL) != 0;

    /* eval frames, the outermost one, and the modules they live in */
    size_t evals = 0, outermost_eval = 0;
    struct interp_modules interp = {{0}, 0};
    for (size_t i = 0; i < n_native; i++) {
        if (!is_eval_frame(native, i))
            continue;
        evals++;
        outermost_eval = i;
        if (native[i].module && !in_interp(&interp, native[i].module) &&
            interp.count < MAX_INTERP_MODULES)
            interp.paths[interp.count++] = native[i].module;
    }

    /* C-level eval calls seen from the Python side */
    size_t runs = 0;
    for (size_t i = 0; i < n_py; i++)
        runs += py[i].entry != 0;
    if (n_py > 0 && !py[n_py - 1].entry)
        return pm_fail(err, PM_ETORN, "the outermost Python frame is not an entry frame");
    if (evals != runs && !(partial && evals < runs))
        return pm_fail(err, PM_ETORN,
                       "the native stack has %zu eval frames but the Python stack %zu C-level "
                       "calls", evals, runs);

    int truncated = 0;
    size_t next_py = 0;
    for (size_t i = 0; i < n_native; i++) {
        if (!show_all && evals > 0 && i > outermost_eval)
            break;
        if (is_eval_frame(native, i)) {
            /* this call's run: up to and including its entry frame */
            while (next_py < n_py) {
                int entry = py[next_py].entry;
                emit_python(py, next_py++, out, cap, n_out, &truncated);
                if (entry)
                    break;
            }
            continue;
        }
        if (!show_all && in_interp(&interp, native[i].module) &&
            (native[i].name == NULL || native_is_plumbing_symbol(native[i].name)))
            continue;
        emit_native(native, i, out, cap, n_out, &truncated);
    }
    /* a partial native stack: the outer calls it did not reach */
    while (next_py < n_py)
        emit_python(py, next_py++, out, cap, n_out, &truncated);
    return truncated;
}
