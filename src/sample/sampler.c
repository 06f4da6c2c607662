/*
 * sampler.c — one sample of every thread, and the loop that takes them.
 *
 * A sample reads the thread list, then each thread's frames.  A torn walk
 * (the target ran while we read) is retried twice from a fresh read of that
 * thread's current frame; if it still fails the thread is left out of this
 * sample and counted.  Sampling never pauses the target.  The loop sleeps to
 * absolute deadlines (clock_nanosleep, TIMER_ABSTIME), so the achieved rate
 * does not drift with the cost of a sample; each interval is drawn uniformly
 * from [0.5, 1.5] times the asked period, so sampling cannot lock onto
 * periodic work in the target while the mean rate stays the asked one.  Never prints but the progress
 * line.
 */
#include "sampler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "../python/pyobj.h"
#include "../python/threadnames.h"
#include "../target/launch.h"
#include "../target/pause.h"
#include "../target/proc.h"
#include "../target/unwind.h"
#include "children.h"
#include "filenames.h"
#include "native.h"

#define STACK_RETRIES 2
#define LIST_RETRIES 3
#define CATCH_UP_LIMIT 50   /* intervals we may fall behind and still catch up */
#define SHORT_MEMO_SIZE 1024u   /* power of two */

struct sampler {
    struct py_process *py;
    struct thread_states *states;
    struct filenames *names;
    struct py_thread threads[SAMPLE_MAX_THREADS];
    struct py_frame frames[SAMPLE_MAX_DEPTH];
    struct sampled_thread out_threads[SAMPLE_MAX_THREADS];
    struct sampled_frame *frame_pool;   /* SAMPLE_MAX_DEPTH per thread, grown lazily */
    size_t frame_pool_threads;
    struct sample sample;
    uint64_t start_ns;
    int debug;             /* PYROMETER_DEBUG set: say why samples were dropped */
    /* threading's thread names, where the version's objects can be read */
    struct py_objctx objects;
    struct py_thread_names *names_cache;
    char thread_names[SAMPLE_MAX_THREADS][PY_THREAD_NAME_MAX];
    /* -n: native frames, merged with the Python ones */
    struct native_unwinder *unwinder;
    int native_idle;                    /* also unwind threads that are not running */
    struct native_frame native[SAMPLE_MAX_DEPTH];
    struct merged_frame merged[SAMPLE_MAX_DEPTH];
    /* short file names by code serial: filenames_short hashes the path */
    struct short_memo {
        uint64_t serial;
        const char *short_filename;
    } short_memo[SHORT_MEMO_SIZE];
};

int sampler_enable_native(struct sampler *s, int include_idle, struct pm_error *err)
{
    s->unwinder = native_unwinder_new(py_pid(s->py), err);
    s->native_idle = include_idle;
    return s->unwinder ? 0 : -1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct sampler *sampler_new(struct py_process *py)
{
    struct sampler *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->py = py;
    s->states = thread_states_new(py_pid(py));
    s->names = filenames_new(py_pid(py));
    if (s->states == NULL || s->names == NULL) {
        sampler_free(s);
        return NULL;
    }
    s->start_ns = now_ns();
    s->debug = getenv("PYROMETER_DEBUG") != NULL;
    struct pm_error err;
    if (py_objctx_init_process(&s->objects, py, &err) == 0)
        s->names_cache = py_thread_names_new();
    return s;
}

void sampler_free(struct sampler *s)
{
    if (s == NULL)
        return;
    thread_states_free(s->states);
    filenames_free(s->names);
    py_thread_names_free(s->names_cache);
    native_unwinder_free(s->unwinder);
    free(s->frame_pool);
    free(s);
}

static struct sampled_frame *frames_for(struct sampler *s, size_t thread_index)
{
    if (thread_index >= s->frame_pool_threads) {
        size_t n = s->frame_pool_threads ? s->frame_pool_threads : 4;
        while (n <= thread_index)
            n *= 2;
        struct sampled_frame *grown =
            realloc(s->frame_pool, n * SAMPLE_MAX_DEPTH * sizeof *grown);
        if (grown == NULL)
            return NULL;
        s->frame_pool = grown;
        s->frame_pool_threads = n;
        /* pointers handed out earlier in this sample moved: refresh them */
        for (size_t i = 0; i < thread_index && i < s->sample.nthreads; i++)
            s->out_threads[i].frames = s->frame_pool + i * SAMPLE_MAX_DEPTH;
    }
    return s->frame_pool + thread_index * SAMPLE_MAX_DEPTH;
}

/* Read one thread's stack with retries; 0 ok (truncated flag set), -1 torn. */
static int read_stack(struct sampler *s, struct py_thread *t, size_t *depth, int *truncated,
                      struct pm_error *err)
{
    for (int attempt = 0;; attempt++) {
        int rc = py_thread_stack(s->py, t, s->frames, SAMPLE_MAX_DEPTH, depth, err);
        if (rc >= 0) {
            *truncated = rc == 1;
            return 0;
        }
        if (err->code == PM_EGONE || attempt >= STACK_RETRIES)
            return -1;
        if (py_thread_refresh(s->py, t, err) != 0)
            return -1;
    }
}

/* While native_unwind holds the thread: its Python stack, same instant. */
struct held_walk {
    struct sampler *s;
    struct py_thread *t;
    size_t depth;
    int truncated, rc;
    struct pm_error err;
};

static void walk_while_stopped(void *ctx)
{
    struct held_walk *w = ctx;
    w->rc = read_stack(w->s, w->t, &w->depth, &w->truncated, &w->err);
}

/* Native + Python stack of t, merged into s->merged; -1 torn/failed. */
static int read_merged(struct sampler *s, struct py_thread *t, size_t *n_out,
                       struct pm_error *err)
{
    struct held_walk w = {.s = s, .t = t, .rc = -1};
    size_t ndepth = 0;
    /* the Python stack must be read while the thread is held, not before */
    py_drop_prefetch(s->py);
    int urc = native_unwind(s->unwinder, t->os_tid, s->native, SAMPLE_MAX_DEPTH, &ndepth,
                            walk_while_stopped, &w, err);
    if (urc < 0)
        return -1;
    if (w.rc != 0) {
        *err = w.err;
        return -1;
    }
    if (w.truncated)
        return pm_fail(err, PM_ETORN, "Python stack deeper than %u frames", SAMPLE_MAX_DEPTH);
    return native_merge(s->native, ndepth, s->frames, w.depth, urc == 1 ? NATIVE_MERGE_PARTIAL : 0,
                        s->merged, SAMPLE_MAX_DEPTH, n_out, err) < 0 ? -1 : 0;
}

int sampler_take_paused(struct sampler *s, struct pause_set *ps, const struct sample **out,
                        struct pm_error *err)
{
    thread_states_prefetch(s->states);
    if (pause_all(ps, err) != 0) {
        thread_states_sweep(s->states);
        return -1;
    }
    int rc = sampler_take(s, out, err);
    pause_resume(ps);
    return rc;
}

/* The short file name of code (names are valid for the sampler's life). */
static const char *short_of(struct sampler *s, const struct py_code *code)
{
    struct short_memo *m = &s->short_memo[code->serial & (SHORT_MEMO_SIZE - 1)];
    if (m->serial != code->serial || m->short_filename == NULL) {
        m->serial = code->serial;
        m->short_filename = filenames_short(s->names, code->filename);
    }
    return m->short_filename;
}

/* Sampled frames from the Python stack in s->frames. */
static void fill_python(struct sampler *s, struct sampled_frame *frames, size_t depth)
{
    for (size_t f = 0; f < depth; f++) {
        const struct py_code *code = s->frames[f].code;
        memset(&frames[f], 0, sizeof frames[f]);
        frames[f].name = code->name;
        frames[f].filename = code->filename;
        frames[f].short_filename = short_of(s, code);
        frames[f].line = s->frames[f].line;
        frames[f].firstlineno = code->firstlineno;
        frames[f].kind = SAMPLED_PYTHON;
        frames[f].frame_addr = s->frames[f].addr;
        frames[f].code = code;
    }
}

/* Sampled frames from the merged native + Python stack. */
static void fill_merged(struct sampler *s, struct sampled_frame *frames, size_t depth)
{
    for (size_t f = 0; f < depth; f++) {
        const struct merged_frame *m = &s->merged[f];
        struct sampled_frame *out = &frames[f];
        memset(out, 0, sizeof *out);
        out->name = m->name;
        out->filename = m->filename;
        if (m->kind == MERGED_PYTHON) {
            const struct py_frame *pf = &s->frames[m->index];
            out->kind = SAMPLED_PYTHON;
            out->line = m->line;
            out->firstlineno = pf->code->firstlineno;
            out->short_filename = short_of(s, pf->code);
            out->frame_addr = pf->addr;
            out->code = pf->code;
        } else {
            const char *base = strrchr(m->filename, '/');
            out->kind = SAMPLED_NATIVE;
            out->line = 0;
            out->short_filename = base ? base + 1 : m->filename;
        }
    }
}

int sampler_take(struct sampler *s, const struct sample **out, struct pm_error *err)
{
    size_t count = 0;
    py_begin_sample(s->py);
    for (int attempt = 0;; attempt++) {
        if (py_list_threads(s->py, s->threads, SAMPLE_MAX_THREADS, &count, err) == 0)
            break;
        if (err->code == PM_EGONE || err->code == PM_EPERM || attempt + 1 >= LIST_RETRIES) {
            if (!proc_is_alive(py_pid(s->py)))
                pm_fail(err, PM_EGONE, "process %d has exited", (int)py_pid(s->py));
            return -1;
        }
        py_begin_sample(s->py);
    }
    if (count > SAMPLE_MAX_THREADS)
        count = SAMPLE_MAX_THREADS;
    s->sample.py = s->py;
    s->sample.t_ns = now_ns() - s->start_ns;
    s->sample.threads = s->out_threads;
    s->sample.nthreads = 0;
    s->sample.torn_threads = 0;
    for (size_t i = 0; i < count; i++) {
        struct py_thread *t = &s->threads[i];
        struct sampled_thread *st = &s->out_threads[s->sample.nthreads];
        st->pid = py_pid(s->py);
        st->name = NULL;
        if (s->names_cache) {
            const char *name = py_thread_name(s->names_cache, &s->objects, t);
            if (name) {
                char *copy = s->thread_names[s->sample.nthreads];
                size_t len = strnlen(name, PY_THREAD_NAME_MAX - 1);
                memcpy(copy, name, len);
                copy[len] = '\0';
                st->name = copy;
            }
        }
        st->thread_id = t->thread_id;
        st->os_tid = t->os_tid;
        st->owns_gil = t->owns_gil;
        /* the GIL's holder runs Python (or C that keeps the GIL): active
         * without asking /proc, which costs a system call per thread */
        st->state = t->owns_gil && py_pid(s->py) ? 'R'
                    : t->os_tid && py_pid(s->py) ? thread_states_get(s->states, t->os_tid) : 0;
        /* unknown (no /proc state, e.g. a core file) counts as active only
         * for a live process, where it errs towards keeping the thread */
        st->active = st->state == 'R' || (st->state == 0 && py_pid(s->py) != 0);
        size_t depth;
        int truncated = 0;
        struct pm_error stack_err;
        int native = s->unwinder && t->os_tid > 0 && (st->active || s->native_idle);
        int rc = native ? read_merged(s, t, &depth, &stack_err)
                        : read_stack(s, t, &depth, &truncated, &stack_err);
        if (rc != 0) {
            /* a thread that went away is a torn sample; a process that went
             * away ends sampling */
            if (stack_err.code == PM_EGONE && !proc_is_alive(py_pid(s->py))) {
                *err = stack_err;
                return -1;
            }
            s->sample.torn_threads++;
            if (s->debug)
                fprintf(stderr, "pyrometer: debug: thread %llu dropped: %s\n",
                        (unsigned long long)t->thread_id, stack_err.msg);
            continue;
        }
        struct sampled_frame *frames = frames_for(s, s->sample.nthreads);
        if (frames == NULL)
            return pm_fail(err, PM_ENOMEM, "out of memory");
        if (native)
            fill_merged(s, frames, depth);
        else
            fill_python(s, frames, depth);
        st->frames = frames;
        st->depth = depth;
        st->truncated = truncated;
        s->sample.nthreads++;
    }
    thread_states_sweep(s->states);
    *out = &s->sample;
    return 0;
}

/* xorshift64*: cheap, and good enough to decorrelate sampling from the
 * target's own rhythms. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* A period in [interval/2, 3*interval/2), mean `interval`. */
static uint64_t jittered(uint64_t interval, uint64_t *state)
{
    if (interval < 2)
        return interval;
    return interval / 2 + next_random(state) % interval;
}

static void progress_line(const struct sampler_result *res, double elapsed_s)
{
    fprintf(stderr, "\r\033[Kpyrometer: %llu samples, %llu errors, %.1f s",
            (unsigned long long)res->samples, (unsigned long long)res->errors, elapsed_s);
    fflush(stderr);
}

static int child_exited(const struct sampler_config *cfg, struct sampler_result *res)
{
    if (cfg->child <= 0 || res->child_status_valid)
        return res->child_status_valid;
    int status;
    if (launch_poll(cfg->child, &status)) {
        res->child_status_valid = 1;
        res->child_status = status;
        return 1;
    }
    return 0;
}

/* ---- groups: the root process and, with -s, its Python descendants ------ */

#define GROUP_SCAN_NS 100000000ull   /* look for new children every 100 ms */

struct group_member {
    pid_t pid;
    struct py_process *py;      /* NULL: not (yet) Python */
    struct sampler *sampler;
    struct pause_set *pause;    /* --blocking */
    int owned;                  /* py and sampler are ours to free */
    int gone;
    char failed_exe[256];       /* exe when attaching failed: retry on exec */
};

struct sampler_group {
    pid_t root;
    int follow;
    int blocking;
    int native, native_idle;
    struct group_member *members;
    size_t count, cap;
    uint64_t next_scan;
};

static struct group_member *group_add(struct sampler_group *g, pid_t pid)
{
    if (g->count == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct group_member *grown = realloc(g->members, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        g->members = grown;
        g->cap = cap;
    }
    struct group_member *m = &g->members[g->count++];
    memset(m, 0, sizeof *m);
    m->pid = pid;
    return m;
}

struct sampler_group *sampler_group_new(pid_t root, struct sampler *root_sampler, int follow)
{
    struct sampler_group *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->root = root;
    g->follow = follow;
    if (root_sampler) {
        struct group_member *m = group_add(g, root);
        if (m == NULL) {
            free(g);
            return NULL;
        }
        m->py = root_sampler->py;
        m->sampler = root_sampler;
    }
    return g;
}

void sampler_group_set_blocking(struct sampler_group *g, int blocking)
{
    g->blocking = blocking;
}

void sampler_group_set_native(struct sampler_group *g, int native, int include_idle)
{
    g->native = native;
    g->native_idle = include_idle;
}

void sampler_group_free(struct sampler_group *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->count; i++)
        pause_free(g->members[i].pause);
    for (size_t i = 0; i < g->count; i++)
        if (g->members[i].owned) {
            sampler_free(g->members[i].sampler);
            py_detach(g->members[i].py);
        }
    free(g->members);
    free(g);
}

static struct group_member *group_find(struct sampler_group *g, pid_t pid)
{
    for (size_t i = 0; i < g->count; i++)
        if (g->members[i].pid == pid)
            return &g->members[i];
    return NULL;
}

/* Try to attach to member m (a descendant); quietly stays non-Python when
 * it is not (yet) Python, and retries only after it execs something else. */
static void group_try_attach(struct sampler_group *g, struct group_member *m)
{
    char exe[256] = "";
    proc_exe(m->pid, exe, sizeof exe);
    if (m->failed_exe[0] && strcmp(exe, m->failed_exe) == 0)
        return;
    struct pm_error err;
    if (py_attach(m->pid, &m->py, &err) != 0) {
        snprintf(m->failed_exe, sizeof m->failed_exe, "%s", exe[0] ? exe : "?");
        m->py = NULL;
        return;
    }
    m->sampler = sampler_new(m->py);
    if (m->sampler == NULL ||
        (g->native && sampler_enable_native(m->sampler, g->native_idle, &err) != 0)) {
        sampler_free(m->sampler);
        m->sampler = NULL;
        py_detach(m->py);
        m->py = NULL;
        return;
    }
    m->owned = 1;
}

/* Find new descendants and forget dead ones. */
static void group_scan(struct sampler_group *g)
{
    pid_t kids[CHILDREN_MAX];
    size_t n = children_of(g->root, kids, CHILDREN_MAX);
    for (size_t i = 0; i < n; i++) {
        struct group_member *m = group_find(g, kids[i]);
        if (m == NULL && (m = group_add(g, kids[i])) == NULL)
            return;
        if (m->gone) {            /* a reused pid: a new process */
            if (m->owned) {
                sampler_free(m->sampler);
                py_detach(m->py);
            }
            pause_free(m->pause);
            memset(m, 0, sizeof *m);
            m->pid = kids[i];
        }
        if (m->py == NULL)
            group_try_attach(g, m);
    }
}

size_t sampler_group_size(const struct sampler_group *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->count; i++)
        n += g->members[i].py != NULL && !g->members[i].gone;
    return n;
}

/* One sample of every live Python member, each handed to fn. Returns -1
 * with *err when the root is gone (PM_EGONE) or reading failed for good. */
static int group_take(struct sampler_group *g, const struct sampler_config *cfg, sample_fn fn,
                      void *ctx, struct sampler_result *res, int *stop, struct pm_error *err)
{
    int sampled = 0;
    for (size_t i = 0; i < g->count; i++) {
        struct group_member *m = &g->members[i];
        if (m->gone || m->sampler == NULL)
            continue;
        const struct sample *smp;
        struct pm_error take_err;
        if (g->blocking && m->pause == NULL && (m->pause = pause_new(m->pid)) == NULL) {
            *err = (struct pm_error){PM_ENOMEM, "out of memory"};
            return -1;
        }
        if (cfg && cfg->before_take)
            cfg->before_take(m->pid, ctx);
        int rc = g->blocking ? sampler_take_paused(m->sampler, m->pause, &smp, &take_err)
                             : sampler_take(m->sampler, &smp, &take_err);
        if (rc != 0) {
            if (take_err.code == PM_EGONE || !proc_is_alive(m->pid)) {
                m->gone = 1;
                if (m->pid == g->root) {
                    *err = take_err;
                    return -1;
                }
                continue;
            }
            if (take_err.code == PM_EPERM) {
                *err = take_err;
                return -1;
            }
            res->errors++;
            if (m->sampler->debug)
                fprintf(stderr, "pyrometer: debug: sample lost: %s\n", take_err.msg);
            continue;
        }
        sampled = 1;
        res->errors += smp->torn_threads;
        res->thread_samples += smp->nthreads;
        if (fn(smp, ctx) != 0) {
            *stop = 1;
            break;
        }
    }
    if (sampled)
        res->samples++;
    return 0;
}

int sampler_run(struct sampler *s, const struct sampler_config *cfg, sample_fn fn, void *ctx,
                struct sampler_result *res, struct pm_error *err)
{
    struct sampler_group *g = sampler_group_new(py_pid(s->py), s, 0);
    if (g == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    int rc = sampler_group_run(g, cfg, fn, ctx, res, err);
    sampler_group_free(g);
    return rc;
}

/* System calls the members' reads have made so far. */
static uint64_t group_syscalls(const struct sampler_group *g)
{
    uint64_t n = 0;
    for (size_t i = 0; i < g->count; i++) {
        const struct group_member *m = &g->members[i];
        if (m->sampler == NULL || m->py == NULL)
            continue;
        n += py_reader(m->py)->stats.syscalls + thread_states_reads(m->sampler->states);
    }
    return n;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void costs_add(struct sampler_costs *c, uint64_t ns, uint64_t syscalls)
{
    uint64_t bucket = ns / 100;
    if (bucket >= SAMPLER_COST_BUCKETS)
        bucket = SAMPLER_COST_BUCKETS - 1;
    c->hist[bucket]++;
    c->ticks++;
    c->total_ns += ns;
    if (ns > c->max_ns)
        c->max_ns = ns;
    c->syscalls += syscalls;
}

double sampler_costs_percentile(const struct sampler_costs *c, double q)
{
    if (c->ticks == 0)
        return 0;
    uint64_t rank = (uint64_t)((q / 100.0) * (double)(c->ticks - 1));
    uint64_t seen = 0;
    for (size_t b = 0; b < SAMPLER_COST_BUCKETS; b++) {
        seen += c->hist[b];
        if (seen > rank)
            return ((double)b + 0.5) / 10.0;   /* the bucket's middle, µs */
    }
    return (double)c->max_ns / 1000.0;
}

int sampler_group_run(struct sampler_group *g, const struct sampler_config *cfg, sample_fn fn,
                      void *ctx, struct sampler_result *res, struct pm_error *err)
{
    memset(res, 0, sizeof *res);
    /* a small timer slack keeps wake-ups close to the deadline */
    prctl(PR_SET_TIMERSLACK, 10000UL, 0, 0, 0);
    uint64_t interval = (uint64_t)(1e9 / cfg->rate_hz);
    if (interval == 0)
        interval = 1;
    uint64_t start = now_ns();
    uint64_t end = cfg->duration_s > 0 ? start + (uint64_t)(cfg->duration_s * 1e9) : UINT64_MAX;
    uint64_t deadline = start, next_progress = start;
    uint64_t rng = start ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
    int rc = 0;
    for (;;) {
        if (cfg->stop && *cfg->stop) {
            res->stopped_by_signal = 1;
            break;
        }
        uint64_t now = now_ns();
        if (now >= end)
            break;
        if (child_exited(cfg, res)) {
            res->target_exited = 1;
            break;
        }
        if (g->follow && now >= g->next_scan) {
            if (!proc_is_alive(g->root)) {
                res->target_exited = 1;
                break;
            }
            group_scan(g);
            g->next_scan = now + GROUP_SCAN_NS;
        }
        res->ticks++;
        int stop = 0;
        struct pm_error take_err;
        uint64_t cpu0 = 0, calls0 = 0;
        if (cfg->costs) {
            calls0 = group_syscalls(g);
            cpu0 = thread_cpu_ns();
        }
        int took = group_take(g, cfg, fn, ctx, res, &stop, &take_err);
        if (cfg->costs) {
            uint64_t cpu1 = thread_cpu_ns();
            costs_add(cfg->costs, cpu1 - cpu0, group_syscalls(g) - calls0);
        }
        if (took != 0) {
            if (take_err.code == PM_EPERM) {
                *err = take_err;
                rc = -1;
            } else {
                res->target_exited = 1;
                child_exited(cfg, res);
            }
            break;
        }
        if (stop)
            break;
        if (cfg->progress && now >= next_progress) {
            progress_line(res, (double)(now - start) / 1e9);
            next_progress = now + 250000000ull;
        }
        deadline += jittered(interval, &rng);
        now = now_ns();
        if (now > deadline + interval) {
            /* Behind schedule (a slow wake-up, a busy machine): take the
             * missed samples now to keep the asked rate, unless we are so
             * far behind (the target or we were stopped) that catching up
             * would be a burst; then start the schedule again from now. */
            res->late++;
            if (now > deadline + CATCH_UP_LIMIT * interval)
                deadline = now;
            continue;
        }
        struct timespec ts = {(time_t)(deadline / 1000000000ull), (long)(deadline % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            if (cfg->stop && *cfg->stop)
                break;
        }
    }
    res->elapsed_ns = now_ns() - start;
    if (cfg->progress) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    return rc;
}

int sampler_group_snapshot(struct sampler_group *g, sample_fn fn, void *ctx,
                           struct pm_error *err)
{
    if (g->follow)
        group_scan(g);
    struct sampler_result res = {0};
    int stop = 0;
    return group_take(g, NULL, fn, ctx, &res, &stop, err);
}
