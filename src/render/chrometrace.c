/*
 * chrometrace.c — the Trace Event Format's JSON Object Format
 * ({"traceEvents":[...],"displayTimeUnit":"ms","otherData":{...}}), what
 * chrome://tracing, Perfetto (ui.perfetto.dev) and speedscope open.
 *
 * Owns turning the per-thread timeline into nested slices:
 *   - one track per thread: metadata events ("ph":"M") name each process
 *     (the program for the profiled pid, "Process N" for others) and each
 *     thread (its name, or "Thread <os tid>");
 *   - complete events ("ph":"X", ts/dur in microseconds since the profile
 *     started) from the thread's runs in timeline order: a slice at depth d
 *     stays open while consecutive samples have the same FUNCTION (name, file,
 *     kind — the line may change) at depth d under the same open slices above
 *     it; so a function on the stack for 50 samples is one slice of ~50
 *     sample periods.  The root frame is depth 0.
 *   - a slice opens at the first sample it is in and closes at the next
 *     sample without it, or one period after the last sample with it if the
 *     thread's next sample comes later than that (a thread that was not
 *     sampled keeps its common frames open: they were still on its stack).
 *     Slices on one thread therefore nest exactly, never overlap partially.
 * Each X event names the function ("name (file)"), its category ("python",
 * "native" or "thread"), and args {file, line} of the slice's first sample.
 *
 * Streamed: events are written thread by thread; only one thread's slices are
 * held before they are written, sorted by start with parents first — viewers
 * (chrome://tracing, Perfetto, speedscope) take the file's order for slices
 * that start together, so a child must never come before its parent.
 * Strings go through jansson's encoder, once per frame (a frame's event text
 * is encoded up front); times are integers printed with a fixed three-digit
 * fraction, so no locale ever touches them.
 *
 * Sees only the aggregated profile; never reads process memory, never prints
 * to the terminal; writes only to the FILE it is given.
 */
#include "render.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct json_writer {
    FILE *out;
    int failed;  /* out of memory or jansson refused a value */
};

/* Write `s` (UTF-8, invalid sequences replaced) as a JSON string. */
static void put_string(struct json_writer *w, const char *s)
{
    char *clean = render_utf8_clean(s);
    json_t *str = clean ? json_string(clean) : NULL;
    if (str == NULL || json_dumpf(str, w->out, JSON_ENCODE_ANY) != 0)
        w->failed = 1;
    json_decref(str);
    free(clean);
}

/* The id a thread's track has: the kernel TID, else the interpreter's id
 * (kept below 2^53 so that JavaScript reads it exactly). */
static uint64_t track_tid(const struct profile_thread *t)
{
    if (t->os_thread_id)
        return t->os_thread_id;
    return t->thread_id & ((UINT64_C(1) << 53) - 1);
}

static uint32_t track_pid(const struct profile *p, const struct profile_thread *t)
{
    return t->pid ? t->pid : (uint32_t)p->meta.pid;
}

/* ---- labels --------------------------------------------------------------- */

/* "name (file)" or "name": the slice title, without the line (a slice spans
 * the lines its function ran).  malloc'd, NULL when out of memory. */
static char *function_label(const struct profile *p, const struct profile_frame *f,
                            int full_filenames)
{
    const char *name = profile_str(p, f->name);
    const char *file = profile_str(p, full_filenames ? f->filename : f->short_file);
    if (file[0] == '\0')
        file = profile_str(p, full_filenames ? f->short_file : f->filename);
    size_t len = strlen(name) + strlen(file) + 4;
    char *label = malloc(len);
    if (label == NULL)
        return NULL;
    if (f->kind == PROFILE_FRAME_SYNTH || file[0] == '\0')
        snprintf(label, len, "%s", name);
    else
        snprintf(label, len, "%s (%s)", name, file);
    return label;
}

/* `s` (UTF-8 cleaned) encoded as a JSON string by jansson; malloc'd. */
static char *json_text(const char *s)
{
    char *clean = render_utf8_clean(s);
    json_t *str = clean ? json_string(clean) : NULL;
    char *text = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
    json_decref(str);
    free(clean);
    return text;
}

/* A frame's X event, encoded once: `head` is everything before the ids and
 * times ({"name":...,"cat":...,"ph":"X",), `tail` everything after
 * (,"args":{...}}). */
struct frame_event {
    char *head, *tail;
};

static int encode_frame_event(const struct profile *p, uint32_t frame, int full_filenames,
                              struct frame_event *e)
{
    static const char *const categories[] = { "python", "native", "thread" };
    const struct profile_frame *f = &p->frames[frame];
    char *label = function_label(p, f, full_filenames);
    char *name = label ? json_text(label) : NULL;
    free(label);
    if (name == NULL)
        return -1;
    const char *category = f->kind < 3 ? categories[f->kind] : "python";
    size_t len = strlen(name) + 64;
    e->head = malloc(len);
    if (e->head != NULL)
        snprintf(e->head, len, "{\"name\":%s,\"cat\":\"%s\",\"ph\":\"X\",", name, category);
    free(name);

    const char *file_name = profile_str(p, f->filename);
    if (f->kind != PROFILE_FRAME_SYNTH && (file_name[0] || f->line > 0)) {
        char *file = json_text(file_name);
        len = (file ? strlen(file) : 0) + 64;
        e->tail = file ? malloc(len) : NULL;
        if (e->tail != NULL)
            snprintf(e->tail, len, ",\"args\":{\"file\":%s,\"line\":%" PRId32 "}}", file,
                     f->line);
        free(file);
    } else {
        e->tail = strdup("}");
    }
    return e->head != NULL && e->tail != NULL ? 0 : -1;
}

static void free_frame_events(struct frame_event *events, uint32_t n)
{
    if (events == NULL)
        return;
    for (uint32_t i = 0; i < n; i++) {
        free(events[i].head);
        free(events[i].tail);
    }
    free(events);
}

static int same_function(const struct profile *p, uint32_t a, uint32_t b)
{
    if (a == b)
        return 1;
    const struct profile_frame *x = &p->frames[a], *y = &p->frames[b];
    return x->name == y->name && x->filename == y->filename &&
           x->short_file == y->short_file && x->kind == y->kind;
}

/* ---- slices --------------------------------------------------------------- */

struct slice {
    uint64_t start_ns, end_ns;
    uint32_t depth;
    uint32_t frame;  /* the frame of its first sample */
};

struct slice_list {
    struct slice *items;
    size_t n, cap;
    int failed;
};

static void slice_add(struct slice_list *l, const struct slice *s)
{
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        struct slice *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL) {
            l->failed = 1;
            return;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = *s;
}

static int compare_slices(const void *a, const void *b)
{
    const struct slice *x = a, *y = b;
    if (x->start_ns != y->start_ns)
        return x->start_ns < y->start_ns ? -1 : 1;
    return x->depth < y->depth ? -1 : x->depth > y->depth;
}

/* The slices open on one thread while walking its runs: open[d] for depth d. */
struct open_stack {
    struct slice *open;
    uint32_t depth, cap;
};

/* Close open slices at depth >= `keep` at time `t` (never before they began). */
static void close_from(struct open_stack *o, uint32_t keep, uint64_t t, struct slice_list *out)
{
    while (o->depth > keep) {
        struct slice *s = &o->open[--o->depth];
        s->end_ns = t > s->start_ns ? t : s->start_ns;
        slice_add(out, s);
    }
}

/* Turn the runs of one thread (`run_ids`, timeline order) into its slices. */
static void thread_slices(const struct profile *p, const size_t *run_ids, size_t nruns,
                          uint64_t period, struct open_stack *o, struct slice_list *out)
{
    uint64_t last_end = 0;  /* one period after the previous run's last sample */
    uint64_t last_start = 0;
    o->depth = 0;
    for (size_t i = 0; i < nruns && !out->failed; i++) {
        const struct profile_run *r = &p->runs[run_ids[i]];
        const struct profile_stack *s = &p->stacks[r->stack];
        const uint32_t *frames = profile_stack_frames(p, s);
        /* Runs come in timeline order; the max() only guards nesting. */
        uint64_t start = r->start_ns > last_start ? r->start_ns : last_start;
        uint32_t common = 0;
        while (common < o->depth && common < s->depth &&
               same_function(p, o->open[common].frame, frames[common]))
            common++;
        close_from(o, common, last_end < start ? last_end : start, out);
        if (s->depth > o->cap) {
            struct slice *grown = realloc(o->open, s->depth * sizeof *grown);
            if (grown == NULL) {
                out->failed = 1;
                return;
            }
            o->open = grown;
            o->cap = s->depth;
        }
        for (uint32_t d = common; d < s->depth; d++)
            o->open[o->depth++] = (struct slice){ start, 0, d, frames[d] };
        uint64_t end = (r->end_ns > start ? r->end_ns : start) + period;
        last_end = end > last_end ? end : last_end;
        last_start = start;
    }
    close_from(o, 0, last_end, out);
}

/* ---- events --------------------------------------------------------------- */

static void put_metadata(struct json_writer *w, int *first, const char *what, uint32_t pid,
                         uint64_t tid, const char *name)
{
    fputs(*first ? "\n" : ",\n", w->out);
    *first = 0;
    fprintf(w->out, "{\"name\":\"%s\",\"ph\":\"M\",\"pid\":%" PRIu32 ",\"tid\":%" PRIu64
            ",\"ts\":0,\"args\":{\"name\":", what, pid, tid);
    put_string(w, name);
    fputs("}}", w->out);
}

static void put_slice(FILE *out, const struct frame_event *events, uint32_t pid,
                      uint64_t tid, const struct slice *s)
{
    uint64_t dur = s->end_ns - s->start_ns;
    fputs(",\n", out);
    fputs(events[s->frame].head, out);
    fprintf(out, "\"pid\":%" PRIu32 ",\"tid\":%" PRIu64 ",\"ts\":%" PRIu64 ".%03" PRIu64
            ",\"dur\":%" PRIu64 ".%03" PRIu64, pid, tid, s->start_ns / 1000, s->start_ns % 1000,
            dur / 1000, dur % 1000);
    fputs(events[s->frame].tail, out);
}

/* Name every process (once) and every thread that has samples. */
static void put_tracks(struct json_writer *w, const struct profile *p, const size_t *first)
{
    int first_event = 1;
    for (uint32_t t = 0; t < p->nthreads; t++) {
        const struct profile_thread *th = &p->threads[t];
        uint32_t pid = track_pid(p, th);
        int named = 0;
        for (uint32_t u = 0; u < t && !named; u++)
            named = track_pid(p, &p->threads[u]) == pid;
        if (!named) {
            char name[300];
            if (pid == (uint32_t)p->meta.pid && p->meta.program[0])
                snprintf(name, sizeof name, "%s", p->meta.program);
            else
                snprintf(name, sizeof name, "Process %" PRIu32, pid);
            put_metadata(w, &first_event, "process_name", pid, pid, name);
        }
        if (first[t + 1] == first[t])
            continue;
        const char *thread_name = profile_str(p, th->name);
        char fallback[48];
        if (thread_name[0] == '\0') {
            snprintf(fallback, sizeof fallback, "Thread %" PRIu64, track_tid(th));
            thread_name = fallback;
        }
        put_metadata(w, &first_event, "thread_name", pid, track_tid(th), thread_name);
    }
    if (first_event)  /* no threads: keep the array non-empty and valid */
        put_metadata(w, &first_event, "process_name", (uint32_t)p->meta.pid,
                     (uint64_t)p->meta.pid, p->meta.program[0] ? p->meta.program : "pyrometer");
}

static void put_other_data(struct json_writer *w, const struct profile *p)
{
    fputs("\"otherData\":{\"exporter\":\"pyrometer\",\"program\":", w->out);
    put_string(w, p->meta.program);
    fputs(",\"python_version\":", w->out);
    put_string(w, p->meta.python_version);
    fprintf(w->out, ",\"pid\":%d,\"rate_hz\":", p->meta.pid);
    json_t *rate = json_real(p->meta.rate_hz);
    if (rate == NULL || json_dumpf(rate, w->out, JSON_ENCODE_ANY | JSON_REAL_PRECISION(12)) != 0)
        w->failed = 1;
    json_decref(rate);
    fprintf(w->out, ",\"samples\":%" PRIu64 ",\"duration_ns\":%" PRIu64 "}", p->meta.samples,
            p->meta.duration_ns);
}

int render_chrometrace(const struct profile *p, const struct render_opts *o, FILE *out,
                       struct pm_error *err)
{
    int full_filenames = o ? o->full_filenames : 0;
    struct json_writer w = { out, 0 };
    struct slice_list slices = { 0 };
    struct open_stack open = { 0 };
    size_t *run_ids = NULL, *first = NULL;
    struct frame_event *events = calloc(p->nframes ? p->nframes : 1, sizeof *events);
    int rc = -1;
    if (events == NULL || render_runs_by_thread(p, &run_ids, &first) != 0)
        goto oom;
    for (uint32_t i = 0; i < p->nframes; i++)
        if (encode_frame_event(p, i, full_filenames, &events[i]) != 0)
            goto oom;

    double rate = p->meta.rate_hz;
    uint64_t period = rate > 0 ? (uint64_t)llround(1e9 / rate) : 0;

    fputs("{\"traceEvents\":[", out);
    put_tracks(&w, p, first);
    for (uint32_t t = 0; t < p->nthreads; t++) {
        const struct profile_thread *th = &p->threads[t];
        slices.n = 0;
        thread_slices(p, run_ids + first[t], first[t + 1] - first[t], period, &open, &slices);
        if (slices.failed)
            goto oom;
        qsort(slices.items, slices.n, sizeof *slices.items, compare_slices);
        for (size_t i = 0; i < slices.n; i++)
            put_slice(out, events, track_pid(p, th), track_tid(th), &slices.items[i]);
    }
    fputs("\n],\"displayTimeUnit\":\"ms\",\n", out);
    put_other_data(&w, p);
    fputs("}\n", out);
    if (w.failed)
        goto oom;
    rc = render_finish(out, "chrometrace", err);
    goto done;

oom:
    pm_fail(err, PM_ENOMEM, "out of memory rendering chrometrace");
done:
    free(slices.items);
    free(open.open);
    free(run_ids);
    free(first);
    free_frame_events(events, p->nframes);
    return rc;
}
