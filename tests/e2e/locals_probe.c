/*
 * locals_probe.c — prints what the python/ object model reads from a live
 * target: every thread's threading name, and the arguments and locals (with
 * reprs) of each frame running a function of a given name.  For
 * tests/e2e/test_locals.py until `dump --locals` is wired; built by the test
 * against build/libpyrometer.a.
 *
 *   locals_probe PID FUNCTION
 *
 * Prints one JSON object: {"threads": [{"thread_id", "name" (null when
 * unknown), "frames": [{"function", "locals": [{"name", "arg", "repr"}]}]}]}
 * with frames listed only for FUNCTION.  Exit 0, or 1 with
 * "locals_probe: error: ..." on stderr.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "python/locals.h"
#include "python/process.h"
#include "python/pyobj.h"
#include "python/pyrepr.h"
#include "python/threadnames.h"

#define MAX_THREADS 256
#define MAX_DEPTH 512
#define MAX_LOCALS 256
#define ATTEMPTS 20

static int die(const struct pm_error *err)
{
    fprintf(stderr, "locals_probe: error: %s\n", err->msg);
    return 1;
}

/* One consistent read of every thread: retried while the target moves. */
static json_t *snapshot(struct py_process *py, struct py_objctx *ctx,
                        struct py_thread_names *names, const char *function,
                        struct pm_error *err)
{
    static struct py_thread threads[MAX_THREADS];
    static struct py_frame frames[MAX_DEPTH];
    static struct py_local locals[MAX_LOCALS];
    size_t nthreads;
    py_begin_sample(py);
    if (py_list_threads(py, threads, MAX_THREADS, &nthreads, err) != 0)
        return NULL;
    if (nthreads > MAX_THREADS)
        nthreads = MAX_THREADS;
    json_t *out = json_array();
    for (size_t i = 0; i < nthreads; i++) {
        const char *name = py_thread_name(names, ctx, &threads[i]);
        json_t *jt = json_pack("{s:I, s:o, s:[]}", "thread_id", (json_int_t)threads[i].thread_id,
                               "name", name ? json_string(name) : json_null(), "frames");
        json_array_append_new(out, jt);
        size_t depth;
        if (py_thread_stack(py, &threads[i], frames, MAX_DEPTH, &depth, err) < 0) {
            json_decref(out);
            return NULL;
        }
        for (size_t f = 0; f < depth; f++) {
            const char *fname = frames[f].code->name;
            const char *dot = strrchr(fname, '.');
            if (strcmp(dot ? dot + 1 : fname, function) != 0)
                continue;
            size_t count;
            if (py_frame_locals(ctx, &frames[f], locals, MAX_LOCALS, &count, err) != 0) {
                json_decref(out);
                return NULL;
            }
            json_t *jl = json_array();
            for (size_t k = 0; k < count; k++) {
                char repr[PY_REPR_MAX + 1];
                py_repr(ctx, locals[k].value, repr, sizeof repr, NULL);
                json_array_append_new(jl, json_pack("{s:s, s:b, s:s}", "name", locals[k].name,
                                                    "arg", locals[k].is_arg, "repr", repr));
            }
            json_array_append_new(json_object_get(jt, "frames"),
                                  json_pack("{s:s, s:o}", "function", fname, "locals", jl));
        }
    }
    return out;
}

int main(int argc, char **argv)
{
    struct pm_error err;
    if (argc != 3) {
        fprintf(stderr, "usage: locals_probe PID FUNCTION\n");
        return 1;
    }
    struct py_process *py;
    if (py_attach((pid_t)atoi(argv[1]), &py, &err) != 0)
        return die(&err);
    struct py_objctx ctx;
    if (py_objctx_init_process(&ctx, py, &err) != 0)
        return die(&err);
    struct py_thread_names *names = py_thread_names_new();
    json_t *threads = NULL;
    for (int attempt = 0; attempt < ATTEMPTS && threads == NULL; attempt++)
        threads = snapshot(py, &ctx, names, argv[2], &err);
    if (threads == NULL)
        return die(&err);
    json_t *doc = json_pack("{s:o}", "threads", threads);
    char *text = json_dumps(doc, JSON_INDENT(1));
    puts(text);
    free(text);
    json_decref(doc);
    py_thread_names_free(names);
    py_detach(py);
    return 0;
}
