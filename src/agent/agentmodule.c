/*
 * agentmodule.c — pyrometer._agent, the C side of the in-process agent.
 *
 * Owns the hot path: the per-thread stack of open scopes (a request, or a
 * max_queries() count), timing each query around the real execute call,
 * the call site (the innermost frame of the application's own code, with a
 * per-code-object cache of "is this application code"), hashing parameters
 * for duplicate detection without keeping them, and handing the finished
 * record to the writer (store.c).  Also the endpoint table the out-of-process
 * sampler reads (endpoint_table.h).  Fingerprinting and analysis happen on
 * the writer thread, never here.
 *
 * Built against the stable ABI (Py_LIMITED_API 3.8) with the abi3 suffix:
 * one .so loads in CPython 3.8 to 3.13.  Functions that exist in every one
 * of those but entered the limited API later (PyFrame_GetBack/GetCode,
 * PyUnicode_AsUTF8AndSize) are looked up at load time with dlsym and
 * replaced by attribute access / an encode where missing.  Holds the GIL
 * throughout (no Python call without it); one interpreter per process.
 */
#define Py_LIMITED_API 0x03080000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "endpoint_table.h"
#include "fingerprint.h"
#include "record.h"
#include "store.h"

/* ---- the endpoint table (read from outside by the sampler) --------------- */

__attribute__((visibility("default"))) struct pm_endpoint_table pyrometer_endpoint_table = {
    PM_ENDPOINT_MAGIC, PM_ENDPOINT_VERSION, PM_ENDPOINT_SLOTS,
    sizeof(struct pm_endpoint_slot), PM_ENDPOINT_LABEL, {{0}},
};

static __thread int tls_slot = -1;
static pthread_key_t slot_key;

/* Cached: both are system calls, asked on every request.  A fork clears
 * them (after_fork_child). */
static __thread int tls_tid;
static int process_id;

static int current_tid(void)
{
    if (tls_tid == 0)
        tls_tid = (int)syscall(SYS_gettid);
    return tls_tid;
}

static int current_pid(void)
{
    if (process_id == 0)
        process_id = (int)getpid();
    return process_id;
}

static void slot_write(struct pm_endpoint_slot *s, const char *label, size_t len)
{
    uint32_t seq = s->seq_begin + 1;
    s->seq_begin = seq;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (len >= PM_ENDPOINT_LABEL)
        len = PM_ENDPOINT_LABEL - 1;
    memcpy(s->label, label, len);
    s->label[len] = '\0';
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    s->seq_end = seq;
}

/* A thread that published something releases its slot when it ends. */
static void slot_release(void *value)
{
    intptr_t i = (intptr_t)value - 1;
    if (i < 0 || i >= (intptr_t)PM_ENDPOINT_SLOTS)
        return;
    struct pm_endpoint_slot *s = &pyrometer_endpoint_table.slot[i];
    slot_write(s, "", 0);
    __atomic_store_n(&s->tid, 0, __ATOMIC_SEQ_CST);
}

static struct pm_endpoint_slot *claim_slot(void)
{
    if (tls_slot >= 0)
        return &pyrometer_endpoint_table.slot[tls_slot];
    int32_t tid = current_tid();
    for (uint32_t i = 0; i < PM_ENDPOINT_SLOTS; i++) {
        int32_t expected = 0;
        if (__atomic_compare_exchange_n(&pyrometer_endpoint_table.slot[i].tid, &expected, tid, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            tls_slot = (int)i;
            pthread_setspecific(slot_key, (void *)(intptr_t)(i + 1));
            return &pyrometer_endpoint_table.slot[i];
        }
    }
    return NULL;   /* more threads than slots: this one is not published */
}

static void publish_endpoint(const char *method, const char *route)
{
    struct pm_endpoint_slot *s = claim_slot();
    if (s == NULL)
        return;
    char label[PM_ENDPOINT_LABEL];
    int n = snprintf(label, sizeof label, "%s%s%s", method ? method : "", method ? " " : "",
                     route ? route : "(unknown)");
    slot_write(s, label, n < 0 ? 0 : (size_t)n);
}

static void clear_endpoint(void)
{
    if (tls_slot >= 0)
        slot_write(&pyrometer_endpoint_table.slot[tls_slot], "", 0);
}

/* ---- clocks ----------------------------------------------------------------- */

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- functions resolved at load time ------------------------------------ */

static PyObject *(*frame_get_back)(PyObject *);   /* new reference */
static PyObject *(*frame_get_code)(PyObject *);   /* new reference */
static int (*frame_get_lineno)(PyObject *);
static int (*frame_get_lasti)(PyObject *);        /* 3.11+ */
static const char *(*unicode_utf8)(PyObject *, Py_ssize_t *);

static PyObject *str_f_back, *str_f_code, *str_f_lineno, *str_co_filename, *str_co_name,
    *str_co_qualname, *str_cursor, *str_rowcount;

static void resolve_functions(void)
{
    *(void **)&frame_get_back = dlsym(RTLD_DEFAULT, "PyFrame_GetBack");
    *(void **)&frame_get_code = dlsym(RTLD_DEFAULT, "PyFrame_GetCode");
    *(void **)&frame_get_lineno = dlsym(RTLD_DEFAULT, "PyFrame_GetLineNumber");
    *(void **)&frame_get_lasti = dlsym(RTLD_DEFAULT, "PyFrame_GetLasti");
    *(void **)&unicode_utf8 = dlsym(RTLD_DEFAULT, "PyUnicode_AsUTF8AndSize");
}

static PyObject *frame_back(PyObject *f)
{
    if (frame_get_back)
        return frame_get_back(f);
    PyObject *b = PyObject_GetAttr(f, str_f_back);
    if (b == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (b == Py_None) {
        Py_DECREF(b);
        return NULL;
    }
    return b;
}

static PyObject *frame_code(PyObject *f)
{
    if (frame_get_code)
        return frame_get_code(f);
    PyObject *c = PyObject_GetAttr(f, str_f_code);
    if (c == NULL)
        PyErr_Clear();
    return c;
}

static int frame_line(PyObject *f)
{
    if (frame_get_lineno)
        return frame_get_lineno(f);
    PyObject *l = PyObject_GetAttr(f, str_f_lineno);
    long v = l ? PyLong_AsLong(l) : -1;
    Py_XDECREF(l);
    if (PyErr_Occurred())
        PyErr_Clear();
    return (int)v;
}

/* UTF-8 of a str (borrowed, valid while the object lives), or of bytes.
 * *owner gets a new reference to keep alive, if one had to be made. */
static const char *text_of(PyObject *o, Py_ssize_t *len, PyObject **owner)
{
    *owner = NULL;
    if (PyUnicode_Check(o)) {
        if (unicode_utf8) {
            const char *s = unicode_utf8(o, len);
            if (s)
                return s;
            PyErr_Clear();
            return NULL;
        }
        *owner = PyUnicode_AsUTF8String(o);
    } else if (PyBytes_Check(o)) {
        char *s;
        if (PyBytes_AsStringAndSize(o, &s, len) == 0)
            return s;
        PyErr_Clear();
        return NULL;
    } else {
        PyObject *str = PyObject_Str(o);   /* e.g. psycopg2.sql.Composed */
        if (str) {
            *owner = PyUnicode_AsUTF8String(str);
            Py_DECREF(str);
        }
    }
    char *s;
    if (*owner == NULL || PyBytes_AsStringAndSize(*owner, &s, len) != 0) {
        PyErr_Clear();
        Py_CLEAR(*owner);
        return NULL;
    }
    return s;
}

/* ---- database aliases: a few strings for the life of the process -------- */

#define MAX_ALIASES 64
static const char *aliases[MAX_ALIASES];
static size_t n_aliases;

/* The process-lifetime copy of alias (so that a query record points to it
 * instead of copying it), or NULL when the table is full.  GIL held. */
static const char *intern_alias(const char *alias)
{
    for (size_t i = 0; i < n_aliases; i++)
        if (strcmp(aliases[i], alias) == 0)
            return aliases[i];
    if (n_aliases == MAX_ALIASES)
        return NULL;
    char *copy = strdup(alias);
    if (copy)
        aliases[n_aliases++] = copy;
    return copy;
}

static int is_interned_alias(const char *alias)
{
    for (size_t i = 0; i < n_aliases; i++)
        if (aliases[i] == alias)
            return 1;
    return 0;
}

/* ---- configuration --------------------------------------------------------- */

static char **exclude_prefixes, **include_prefixes;
static size_t n_exclude, n_include;
static int capture_params;
static int configured;

static int has_prefix(const char *s, char **prefixes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* Application code: a real file, not under the interpreter, its packages,
 * or the frameworks and drivers; with include prefixes, only under them. */
static int is_application_file(const char *file)
{
    if (file[0] == '<' || file[0] == '\0')
        return 0;
    if (n_include)
        return has_prefix(file, include_prefixes, n_include);
    if (strstr(file, "/site-packages/") || strstr(file, "/dist-packages/"))
        return 0;
    return !has_prefix(file, exclude_prefixes, n_exclude);
}

/* ---- call sites -------------------------------------------------------------- */

struct code_info {
    PyObject *code;        /* strong reference: the pointer stays unique */
    char *file, *function;
    int application;
};

#define CODE_CACHE_SIZE 8192u
static struct code_info code_cache[CODE_CACHE_SIZE];
static size_t code_cache_used;

static char *dup_text(PyObject *o)
{
    PyObject *owner = NULL;
    Py_ssize_t len;
    const char *s = o ? text_of(o, &len, &owner) : NULL;
    char *out = s ? strndup(s, (size_t)len) : strdup("?");
    Py_XDECREF(owner);
    return out;
}

/* Fill info for a code object (its strings malloc'ed). */
static int describe_code(PyObject *code, struct code_info *info)
{
    PyObject *file = PyObject_GetAttr(code, str_co_filename);
    PyObject *name = PyObject_GetAttr(code, str_co_qualname);
    if (name == NULL) {
        PyErr_Clear();
        name = PyObject_GetAttr(code, str_co_name);
    }
    PyErr_Clear();
    info->file = dup_text(file);
    info->function = dup_text(name);
    Py_XDECREF(file);
    Py_XDECREF(name);
    if (info->file == NULL || info->function == NULL) {
        free(info->file);
        free(info->function);
        return -1;
    }
    info->application = is_application_file(info->file);
    return 0;
}

/* The cached description of code, or NULL when the cache is full (then
 * *scratch is filled, its strings to be freed by the caller). */
static const struct code_info *code_info_for(PyObject *code, struct code_info *scratch, int *ok)
{
    size_t i = ((uintptr_t)code >> 4) * 0x9e3779b97f4a7c15ull >> 51 & (CODE_CACHE_SIZE - 1);
    *ok = 1;
    while (code_cache[i].code) {
        if (code_cache[i].code == code)
            return &code_cache[i];
        i = (i + 1) & (CODE_CACHE_SIZE - 1);
    }
    if (code_cache_used < CODE_CACHE_SIZE * 3 / 4) {
        if (describe_code(code, &code_cache[i]) != 0) {
            *ok = 0;
            return NULL;
        }
        Py_INCREF(code);
        code_cache[i].code = code;
        code_cache_used++;
        return &code_cache[i];
    }
    if (describe_code(code, scratch) != 0)
        *ok = 0;
    return NULL;
}

/* Line numbers by (code object, instruction offset), 3.11+ (where
 * PyFrame_GetLasti exists): PyFrame_GetLineNumber decodes the code object's
 * line table from its start each time, the largest part of a query's cost
 * in the agent (callgrind: 1 600 of 4 200 instructions per ORM query).  Only
 * code objects the code cache holds a reference to are keys, so an address
 * is never reused for another code object while its entries exist. */
#define LINE_CACHE_SIZE 4096u
struct line_entry {
    PyObject *code;
    int lasti, line;
};
static struct line_entry line_cache[LINE_CACHE_SIZE];
static size_t line_cache_used;

static int cached_line(PyObject *f, PyObject *code)
{
    int lasti = frame_get_lasti ? frame_get_lasti(f) : -1;
    if (lasti < 0)
        return frame_line(f);
    size_t i = (((uintptr_t)code >> 4) ^ ((uint64_t)lasti << 20)) * 0x9e3779b97f4a7c15ull >> 50 &
               (LINE_CACHE_SIZE - 1);
    while (line_cache[i].code) {
        if (line_cache[i].code == code && line_cache[i].lasti == lasti)
            return line_cache[i].line;
        i = (i + 1) & (LINE_CACHE_SIZE - 1);
    }
    int line = frame_line(f);
    if (line_cache_used < LINE_CACHE_SIZE * 3 / 4) {
        line_cache[i] = (struct line_entry){code, lasti, line};
        line_cache_used++;
    }
    return line;
}

#define MAX_WALK 400

/* The innermost application frame's site; strings are immortal (cache) or
 * copied into arena.  No application frame: site->file stays NULL. */
static void find_site(struct agent_site *site, struct arena *arena)
{
    memset(site, 0, sizeof *site);
    PyObject *f = (PyObject *)PyEval_GetFrame();
    Py_XINCREF(f);
    for (int depth = 0; f && depth < MAX_WALK; depth++) {
        PyObject *code = frame_code(f);
        if (code) {
            struct code_info scratch = {0};
            int ok;
            const struct code_info *info = code_info_for(code, &scratch, &ok);
            Py_DECREF(code);
            if (info && info->application) {
                site->file = info->file;
                site->function = info->function;
                site->line = cached_line(f, info->code);
                break;
            }
            if (info == NULL && ok) {
                int app = scratch.application;
                if (app) {
                    site->file = arena_strndup(arena, scratch.file, strlen(scratch.file));
                    site->function = arena_strndup(arena, scratch.function,
                                                   strlen(scratch.function));
                    site->line = frame_line(f);
                }
                free(scratch.file);
                free(scratch.function);
                if (app)
                    break;
            }
        }
        PyObject *back = frame_back(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
}

/* ---- scopes ---------------------------------------------------------------------- */

enum scope_kind { SCOPE_REQUEST = 1, SCOPE_COUNT = 2 };

struct scope {
    struct scope *prev;
    int kind;
    struct agent_request *req;
    int64_t cpu_start;
};

static __thread struct scope *tls_top;
static __thread int tls_in_query;   /* a wrapped call is running: inner layers pass through */

static struct scope *scope_push(int kind, const char *framework)
{
    struct scope *s = calloc(1, sizeof *s);
    struct agent_request *r = kind == SCOPE_REQUEST ? store_request_new() : request_new();
    if (s == NULL || r == NULL) {
        free(s);
        request_free(r);
        PyErr_NoMemory();
        return NULL;
    }
    s->kind = kind;
    s->req = r;
    r->framework = framework ? arena_strndup(&r->arena, framework, strlen(framework)) : NULL;
    r->pid = current_pid();
    r->tid = current_tid();
    r->start_unix_ns = clock_ns(CLOCK_REALTIME);
    r->start_mono_ns = clock_ns(CLOCK_MONOTONIC);
    s->cpu_start = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    s->prev = tls_top;
    tls_top = s;
    return s;
}

static struct scope *scope_pop(int kind)
{
    struct scope *s = tls_top;
    if (s == NULL || s->kind != kind) {
        PyErr_SetString(PyExc_RuntimeError, kind == SCOPE_REQUEST
                        ? "pyrometer: no request is open on this thread"
                        : "pyrometer: no max_queries() block is open on this thread");
        return NULL;
    }
    tls_top = s->prev;
    return s;
}

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_object(PyObject *o)
{
    Py_hash_t h = PyObject_Hash(o);
    if (h == -1 && PyErr_Occurred()) {   /* unhashable (list, dict): its repr */
        PyErr_Clear();
        PyObject *r = PyObject_Repr(o);
        h = r ? PyObject_Hash(r) : 0;
        Py_XDECREF(r);
        PyErr_Clear();
    }
    return (uint64_t)h;
}

/* A hash of the parameter values (0 for none); kept in memory only. */
static uint64_t hash_params(PyObject *params)
{
    if (params == NULL || params == Py_None)
        return 0;
    uint64_t h = 0x51ed27;
    if (PyTuple_Check(params)) {
        Py_ssize_t n = PyTuple_Size(params);
        for (Py_ssize_t i = 0; i < n; i++)
            h = mix64(h ^ hash_object(PyTuple_GetItem(params, i)));
    } else if (PyList_Check(params)) {
        Py_ssize_t n = PyList_Size(params);
        for (Py_ssize_t i = 0; i < n; i++)
            h = mix64(h ^ hash_object(PyList_GetItem(params, i)));
    } else {
        h = mix64(h ^ hash_object(params));   /* dicts hash through their repr */
    }
    return h ? h : 1;
}

struct query_data {
    PyObject *sql, *params;
    const char *alias;
    int64_t start_ns, duration_ns, rows;
    int many, failed;
};

static void add_query_to(struct scope *s, const struct query_data *d, const char *sql,
                         Py_ssize_t sql_len, const struct agent_site *site, int copy_site,
                         uint64_t params_hash, const char *params_repr, Py_ssize_t params_len)
{
    struct agent_request *r = s->req;
    struct agent_query *q = request_add_query(r);
    if (q == NULL)
        return;
    q->sql = arena_strndup(&r->arena, sql, (size_t)sql_len);
    q->sql_len = q->sql ? (size_t)sql_len : 0;
    q->alias = d->alias == NULL || is_interned_alias(d->alias)
                   ? d->alias : arena_strndup(&r->arena, d->alias, strlen(d->alias));
    q->params_hash = params_hash;
    q->params = params_repr ? arena_strndup(&r->arena, params_repr, (size_t)params_len) : NULL;
    q->offset_ns = d->start_ns - r->start_mono_ns;
    q->duration_ns = d->duration_ns;
    q->rows = d->rows;
    q->many = (uint8_t)d->many;
    q->failed = (uint8_t)d->failed;
    q->site = *site;
    if (copy_site && site->file) {
        q->site.file = arena_strndup(&r->arena, site->file, strlen(site->file));
        q->site.function = arena_strndup(&r->arena, site->function, strlen(site->function));
    }
    r->db_ns += d->duration_ns;
}

/* Record a finished query in every open scope.  Called with any exception
 * of the query itself already fetched away. */
static void record_query(const struct query_data *d)
{
    struct scope *top = tls_top;
    PyObject *owner, *repr_owner = NULL, *repr = NULL;
    Py_ssize_t len, repr_len = 0;
    const char *sql = text_of(d->sql, &len, &owner);
    if (sql == NULL) {
        sql = "";
        len = 0;
    }
    const char *params_repr = NULL;
    if (capture_params && d->params && d->params != Py_None) {
        repr = PyObject_Repr(d->params);
        params_repr = repr ? text_of(repr, &repr_len, &repr_owner) : NULL;
        PyErr_Clear();
    }
    uint64_t params_hash = d->many ? 0 : hash_params(d->params);
    struct agent_site site;
    find_site(&site, &top->req->arena);
    for (struct scope *s = top; s; s = s->prev)
        add_query_to(s, d, sql, len, &site, s != top, params_hash, params_repr, repr_len);
    Py_XDECREF(owner);
    Py_XDECREF(repr_owner);
    Py_XDECREF(repr);
    PyErr_Clear();
}

static int64_t rowcount_of(PyObject *cursor)
{
    if (cursor == NULL)
        return -1;
    PyObject *rc = PyObject_GetAttr(cursor, str_rowcount);
    long long rows = rc && PyLong_Check(rc) ? PyLong_AsLongLong(rc) : -1;
    Py_XDECREF(rc);
    PyErr_Clear();
    return rows < 0 ? -1 : (int64_t)rows;
}

static PyObject *call_it(PyObject *fn, PyObject *args, PyObject *const *four)
{
    if (args)
        return PyObject_CallObject(fn, args);
    /* no tuple to make: a vectorcall from CPython 3.9 on */
    return PyObject_CallFunctionObjArgs(fn, four[0], four[1], four[2], four[3], NULL);
}

/* Call fn(*args) (or fn(*four) when args is NULL), timing it; record it if
 * a scope is open on this thread and no outer wrapper is already recording
 * this call. */
static PyObject *timed_call(PyObject *fn, PyObject *args, PyObject *const *four, PyObject *sql,
                            PyObject *params, int many, const char *alias, PyObject *cursor,
                            PyObject *context, int64_t entered)
{
    if (tls_top == NULL || tls_in_query)
        return call_it(fn, args, four);
    tls_in_query = 1;
    int64_t t0 = clock_ns(CLOCK_MONOTONIC);
    PyObject *result = call_it(fn, args, four);
    int64_t t1 = clock_ns(CLOCK_MONOTONIC);
    tls_in_query = 0;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (tls_top != NULL) {   /* the call may have closed scopes (it should not) */
        PyObject *inner = NULL;
        if (cursor == NULL && context && PyDict_Check(context)) {
            /* Django's CursorWrapper: its rowcount goes through __getattr__
             * (an AttributeError made and dropped each time); the DB-API
             * cursor it wraps, an instance attribute, answers directly. */
            cursor = PyDict_GetItem(context, str_cursor);   /* borrowed */
            inner = cursor ? PyObject_GetAttr(cursor, str_cursor) : NULL;
            if (inner == NULL)
                PyErr_Clear();
        }
        struct query_data d = {sql, params, alias, t0, t1 - t0,
                               result ? rowcount_of(inner ? inner : cursor) : -1, many,
                               result == NULL};
        Py_XDECREF(inner);
        record_query(&d);
        if (tls_top)   /* our own time: before the call and after it */
            tls_top->req->agent_ns += (t0 - entered) + (clock_ns(CLOCK_MONOTONIC) - t1);
    }
    PyErr_Restore(type, value, tb);
    return result;
}

/* ---- QueryWrapper: Django's connection.execute_wrapper protocol -------------- */

typedef struct {
    PyObject_HEAD
    char *alias;
} QueryWrapper;

static int QueryWrapper_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    const char *alias = NULL;
    static char *kwlist[] = {"alias", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|z", kwlist, &alias))
        return -1;
    QueryWrapper *w = (QueryWrapper *)self;
    if (w->alias && !is_interned_alias(w->alias))
        free(w->alias);
    const char *interned = alias ? intern_alias(alias) : NULL;
    w->alias = interned ? (char *)interned : alias ? strdup(alias) : NULL;
    return 0;
}

static void QueryWrapper_dealloc(PyObject *self)
{
    QueryWrapper *w = (QueryWrapper *)self;
    if (w->alias && !is_interned_alias(w->alias))
        free(w->alias);
    PyTypeObject *tp = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

/* wrapper(execute, sql, params, many, context) */
static PyObject *QueryWrapper_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    int64_t entered = clock_ns(CLOCK_MONOTONIC);
    PyObject *execute, *sql, *params, *many, *context;
    if (kwds && PyDict_Size(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "QueryWrapper takes positional arguments only");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "QueryWrapper", 5, 5, &execute, &sql, &params, &many, &context))
        return NULL;
    PyObject *four[4] = {sql, params, many, context};
    return timed_call(execute, NULL, four, sql, params, many == Py_True || PyObject_IsTrue(many) == 1,
                      ((QueryWrapper *)self)->alias, NULL, context, entered);
}

static PyType_Slot QueryWrapper_slots[] = {
    {Py_tp_init, (void *)QueryWrapper_init},
    {Py_tp_dealloc, (void *)QueryWrapper_dealloc},
    {Py_tp_call, (void *)QueryWrapper_call},
    {Py_tp_doc, (void *)"QueryWrapper(alias): a Django execute wrapper that records each query "
                        "in the request open on the calling thread."},
    {0, NULL},
};

static PyType_Spec QueryWrapper_spec = {
    "pyrometer._agent.QueryWrapper", sizeof(QueryWrapper), 0, Py_TPFLAGS_DEFAULT,
    QueryWrapper_slots,
};

/* ---- module functions ------------------------------------------------------------- */

static void flush_at_exit(void)
{
    store_flush(5000);
}

static void after_fork_child(void)
{
    for (uint32_t i = 0; i < PM_ENDPOINT_SLOTS; i++) {
        struct pm_endpoint_slot *s = &pyrometer_endpoint_table.slot[i];
        s->label[0] = '\0';
        s->tid = 0;
        s->seq_end = s->seq_begin;
    }
    tls_slot = -1;
    tls_tid = 0;
    process_id = 0;
}

static char **string_list(PyObject *seq, size_t *n)
{
    *n = 0;
    if (seq == NULL || seq == Py_None)
        return NULL;
    PyObject *fast = PySequence_Tuple(seq);
    if (fast == NULL)
        return NULL;
    Py_ssize_t len = PyTuple_Size(fast);
    char **out = calloc((size_t)len + 1, sizeof *out);
    for (Py_ssize_t i = 0; out && i < len; i++) {
        char *s = dup_text(PyTuple_GetItem(fast, i));
        if (s && s[0])
            out[(*n)++] = s;
        else
            free(s);
    }
    Py_DECREF(fast);
    return out;
}

static PyObject *agent_configure(PyObject *self, PyObject *args, PyObject *kwds)
{
    (void)self;
    static char *kwlist[] = {"db", "service", "n_plus_one", "capture_params", "exclude",
                             "include", NULL};
    const char *db = NULL, *service = NULL;
    unsigned int n_plus_one = 5;
    int capture = 0;
    PyObject *exclude = NULL, *include = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|zIpOO", kwlist, &db, &service, &n_plus_one,
                                     &capture, &exclude, &include))
        return NULL;
    struct store_config cfg = {db, service, n_plus_one};
    if (store_configure(&cfg) != 0)
        return PyErr_NoMemory();
    size_t ne, ni;
    char **ex = string_list(exclude, &ne), **in = string_list(include, &ni);
    if (PyErr_Occurred())
        return NULL;
    /* Old lists are leaked on purpose: cached code descriptions were made
     * with them and configure is called once or twice per process. */
    exclude_prefixes = ex;
    n_exclude = ne;
    include_prefixes = in;
    n_include = ni;
    capture_params = capture;
    if (!configured) {
        configured = 1;
        Py_AtExit(flush_at_exit);
    }
    Py_RETURN_NONE;
}

static PyObject *agent_begin(PyObject *self, PyObject *args)
{
    (void)self;
    const char *framework = NULL;
    if (!PyArg_ParseTuple(args, "|z", &framework))
        return NULL;
    struct scope *s = scope_push(SCOPE_REQUEST, framework ? framework : "wsgi");
    if (s == NULL)
        return NULL;
    s->req->agent_ns += clock_ns(CLOCK_MONOTONIC) - s->req->start_mono_ns;
    Py_RETURN_NONE;
}

static struct scope *innermost_request(void)
{
    for (struct scope *s = tls_top; s; s = s->prev)
        if (s->kind == SCOPE_REQUEST)
            return s;
    return NULL;
}

static void set_text(struct agent_request *r, const char **field, const char *value)
{
    if (value)
        *field = arena_strndup(&r->arena, value, strlen(value));
}

/* set_route(method, route, view): known once the URL is resolved; published
 * for the sampler at once. */
static PyObject *agent_set_route(PyObject *self, PyObject *args)
{
    (void)self;
    const char *method = NULL, *route = NULL, *view = NULL;
    if (!PyArg_ParseTuple(args, "zz|z", &method, &route, &view))
        return NULL;
    struct scope *s = innermost_request();
    if (s) {
        set_text(s->req, &s->req->method, method);
        set_text(s->req, &s->req->route, route);
        set_text(s->req, &s->req->view, view);
    }
    publish_endpoint(method, route);
    Py_RETURN_NONE;
}

/* finish(method, route, view, status, error): close the request, queue it. */
static PyObject *agent_finish(PyObject *self, PyObject *args)
{
    (void)self;
    int64_t entered = clock_ns(CLOCK_MONOTONIC);
    const char *method = NULL, *route = NULL, *view = NULL, *error = NULL;
    int status = 0;
    if (!PyArg_ParseTuple(args, "zzzi|z", &method, &route, &view, &status, &error))
        return NULL;
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    struct scope *s = scope_pop(SCOPE_REQUEST);
    if (s == NULL)
        return NULL;
    struct agent_request *r = s->req;
    r->latency_ns = now - r->start_mono_ns;
    r->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - s->cpu_start;
    set_text(r, &r->method, method);
    set_text(r, &r->route, route);
    set_text(r, &r->view, view);
    set_text(r, &r->error, error);
    r->status = status;
    free(s);
    if (innermost_request() == NULL)
        clear_endpoint();
    PyObject *result = Py_BuildValue("(IL)", r->nqueries, (long long)r->db_ns);
    r->agent_ns += clock_ns(CLOCK_MONOTONIC) - entered;   /* store_submit: a lock and a link */
    store_submit(r);
    return result;
}

static PyObject *agent_count_begin(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    if (scope_push(SCOPE_COUNT, "count") == NULL)
        return NULL;
    Py_RETURN_NONE;
}

/* count_end() -> [(normalised sql, file, line, function, duration_ns)] */
static PyObject *agent_count_end(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    struct scope *s = scope_pop(SCOPE_COUNT);
    if (s == NULL)
        return NULL;
    struct agent_request *r = s->req;
    PyObject *list = PyList_New(0);
    for (uint32_t i = 0; list && i < r->nqueries; i++) {
        const struct agent_query *q = &r->queries[i];
        size_t cap = SQL_NORMALIZED_CAP(q->sql_len), n;
        char *buf = malloc(cap);
        if (buf == NULL) {
            Py_CLEAR(list);
            PyErr_NoMemory();
            break;
        }
        n = sql_normalize(q->sql ? q->sql : "", q->sql_len, buf, cap);
        PyObject *item = Py_BuildValue("(s#zizL)", buf, (Py_ssize_t)n, q->site.file,
                                       q->site.line, q->site.function, (long long)q->duration_ns);
        free(buf);
        if (item == NULL || PyList_Append(list, item) != 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    request_free(r);
    free(s);
    return list;
}

/* dbapi_call(method, cursor, sql, extra, many, alias): method(cursor, sql,
 * *extra), timed and recorded; rows from cursor.rowcount. */
static PyObject *agent_dbapi_call(PyObject *self, PyObject *args)
{
    (void)self;
    int64_t entered = clock_ns(CLOCK_MONOTONIC);
    PyObject *method, *cursor, *sql, *extra;
    int many = 0;
    const char *alias = NULL;
    if (!PyArg_ParseTuple(args, "OOOO!|pz", &method, &cursor, &sql, &PyTuple_Type, &extra, &many,
                          &alias))
        return NULL;
    Py_ssize_t n = PyTuple_Size(extra);
    PyObject *call_args = PyTuple_New(n + 2);
    if (call_args == NULL)
        return NULL;
    Py_INCREF(cursor);
    PyTuple_SetItem(call_args, 0, cursor);
    Py_INCREF(sql);
    PyTuple_SetItem(call_args, 1, sql);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GetItem(extra, i);
        Py_INCREF(item);
        PyTuple_SetItem(call_args, i + 2, item);
    }
    PyObject *params = n > 0 ? PyTuple_GetItem(extra, 0) : NULL;
    const char *interned = alias ? intern_alias(alias) : NULL;
    PyObject *result = timed_call(method, call_args, NULL, sql, params, many,
                                  interned ? interned : alias, cursor, NULL, entered);
    Py_DECREF(call_args);
    return result;
}

static PyObject *agent_in_request(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyBool_FromLong(innermost_request() != NULL);
}

static PyObject *agent_flush(PyObject *self, PyObject *args)
{
    (void)self;
    double timeout = 10.0;
    if (!PyArg_ParseTuple(args, "|d", &timeout))
        return NULL;
    int done;
    Py_BEGIN_ALLOW_THREADS
    done = store_flush((int)(timeout * 1000));
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(done);
}

static PyObject *agent_stats(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    struct store_stats st;
    store_get_stats(&st);
    return Py_BuildValue("{sKsKsKsKsI}", "submitted", (unsigned long long)st.submitted,
                         "written", (unsigned long long)st.written, "dropped",
                         (unsigned long long)st.dropped, "failed_batches",
                         (unsigned long long)st.failed_batches, "queued", st.queued);
}

/* normalize(sql) -> (normalised text, fingerprint as 16 hex digits) */
static PyObject *agent_normalize(PyObject *self, PyObject *arg)
{
    (void)self;
    PyObject *owner;
    Py_ssize_t len;
    const char *sql = text_of(arg, &len, &owner);
    if (sql == NULL) {
        Py_XDECREF(owner);
        PyErr_SetString(PyExc_TypeError, "normalize() takes str or bytes");
        return NULL;
    }
    size_t cap = SQL_NORMALIZED_CAP(len), n;
    char *buf = malloc(cap);
    if (buf == NULL) {
        Py_XDECREF(owner);
        return PyErr_NoMemory();
    }
    uint64_t fp = sql_fingerprint(sql, (size_t)len, buf, cap, &n);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fp);
    PyObject *result = Py_BuildValue("(s#s)", buf, (Py_ssize_t)n, hex);
    free(buf);
    Py_XDECREF(owner);
    return result;
}

static PyMethodDef agent_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))agent_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(db, service=None, n_plus_one=5, capture_params=False, exclude=(), include=())"},
    {"begin", agent_begin, METH_VARARGS, "begin(framework): open a request on this thread"},
    {"set_route", agent_set_route, METH_VARARGS,
     "set_route(method, route, view=None): name the open request and publish it"},
    {"finish", agent_finish, METH_VARARGS,
     "finish(method, route, view, status, error=None) -> (queries, db_ns): close and queue it"},
    {"count_begin", agent_count_begin, METH_NOARGS, "open a max_queries() block"},
    {"count_end", agent_count_end, METH_NOARGS,
     "close it -> [(sql, file, line, function, duration_ns)]"},
    {"dbapi_call", agent_dbapi_call, METH_VARARGS,
     "dbapi_call(method, cursor, sql, extra, many=False, alias=None)"},
    {"in_request", agent_in_request, METH_NOARGS, "is a request open on this thread"},
    {"flush", agent_flush, METH_VARARGS, "flush(timeout=10.0) -> True when all is written"},
    {"stats", agent_stats, METH_NOARGS, "counters of the writer"},
    {"normalize", agent_normalize, METH_O, "normalize(sql) -> (text, fingerprint)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef agent_module = {
    PyModuleDef_HEAD_INIT, "pyrometer._agent",
    "The C side of pyrometer's in-process agent (see pyrometer/__init__.py).", -1,
    agent_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__agent(void)
{
    resolve_functions();
    static const struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&str_f_back, "f_back"},           {&str_f_code, "f_code"},
        {&str_f_lineno, "f_lineno"},       {&str_co_filename, "co_filename"},
        {&str_co_name, "co_name"},         {&str_co_qualname, "co_qualname"},
        {&str_cursor, "cursor"},           {&str_rowcount, "rowcount"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return NULL;
    static int key_made;
    if (!key_made) {
        if (pthread_key_create(&slot_key, slot_release) != 0)
            return PyErr_NoMemory();
        pthread_atfork(NULL, NULL, after_fork_child);
        key_made = 1;
    }
    PyObject *m = PyModule_Create(&agent_module);
    if (m == NULL)
        return NULL;
    PyObject *type = PyType_FromSpec(&QueryWrapper_spec);
    if (type == NULL || PyModule_AddObject(m, "QueryWrapper", type) != 0) {
        Py_XDECREF(type);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "ENDPOINT_SLOTS", PM_ENDPOINT_SLOTS);
    PyModule_AddIntConstant(m, "SCHEMA_VERSION", STORE_SCHEMA_VERSION);
    return m;
}
