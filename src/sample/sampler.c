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

#include "../target/launch.h"
#include "../target/proc.h"
#include "filenames.h"

#define STACK_RETRIES 2
#define LIST_RETRIES 3
#define CATCH_UP_LIMIT 50   /* intervals we may fall behind and still catch up */

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
};

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
    return s;
}

void sampler_free(struct sampler *s)
{
    if (s == NULL)
        return;
    thread_states_free(s->states);
    filenames_free(s->names);
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
    s->sample.t_ns = now_ns() - s->start_ns;
    s->sample.threads = s->out_threads;
    s->sample.nthreads = 0;
    s->sample.torn_threads = 0;
    for (size_t i = 0; i < count; i++) {
        struct py_thread *t = &s->threads[i];
        struct sampled_thread *st = &s->out_threads[s->sample.nthreads];
        st->pid = py_pid(s->py);
        st->name = NULL;
        st->thread_id = t->thread_id;
        st->os_tid = t->os_tid;
        st->owns_gil = t->owns_gil;
        st->state = t->os_tid ? thread_states_get(s->states, t->os_tid) : 0;
        st->active = st->state == 0 || st->state == 'R';
        size_t depth;
        int truncated;
        struct pm_error stack_err;
        if (read_stack(s, t, &depth, &truncated, &stack_err) != 0) {
            if (stack_err.code == PM_EGONE) {
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
        for (size_t f = 0; f < depth; f++) {
            const struct py_code *code = s->frames[f].code;
            frames[f].name = code->name;
            frames[f].filename = code->filename;
            frames[f].short_filename = filenames_short(s->names, code->filename);
            frames[f].line = s->frames[f].line;
            frames[f].firstlineno = code->firstlineno;
            frames[f].kind = SAMPLED_PYTHON;
        }
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

int sampler_run(struct sampler *s, const struct sampler_config *cfg, sample_fn fn, void *ctx,
                struct sampler_result *res, struct pm_error *err)
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
        res->ticks++;
        const struct sample *smp;
        struct pm_error take_err;
        if (sampler_take(s, &smp, &take_err) != 0) {
            if (take_err.code == PM_EGONE || !proc_is_alive(py_pid(s->py))) {
                res->target_exited = 1;
                child_exited(cfg, res);
                break;
            }
            if (take_err.code == PM_EPERM) {
                *err = take_err;
                rc = -1;
                break;
            }
            res->errors++;
            if (s->debug)
                fprintf(stderr, "pyrometer: debug: sample lost: %s\n", take_err.msg);
        } else {
            res->samples++;
            res->errors += smp->torn_threads;
            res->thread_samples += smp->nthreads;
            if (fn(smp, ctx) != 0)
                break;
        }
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
