/*
 * speedscope.c — speedscope's JSON file format
 * (https://www.speedscope.app/file-format-schema.json): the profile's frames
 * as "shared.frames", and one "sampled" profile per thread whose samples
 * follow the timeline (one sample per run, weighted by the run's duration in
 * seconds: count / rate).
 *
 * The document is streamed rather than built as one tree, because a long
 * recording holds millions of runs; every string and every real number still
 * goes through jansson's encoder, so escaping and number syntax (whatever the
 * locale) are jansson's, not ours.  Integers are printed directly.
 *
 * Sees only the aggregated profile; never reads process memory, never prints
 * to the terminal; writes only to the FILE it is given.
 */
#include "render.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SPEEDSCOPE_SCHEMA "https://www.speedscope.app/file-format-schema.json"

/* Reusable encoders, so writing a value allocates nothing. */
struct json_writer {
    FILE *out;
    json_t *real;   /* one json real, re-set for each number */
    int failed;     /* out of memory or jansson refused a value */
};

static void put_raw(struct json_writer *w, const char *text)
{
    fputs(text, w->out);
}

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

static void put_real(struct json_writer *w, double value)
{
    if (json_real_set(w->real, value) != 0 ||
        json_dumpf(w->real, w->out, JSON_ENCODE_ANY | JSON_REAL_PRECISION(12)) != 0)
        w->failed = 1;
}

static void put_key(struct json_writer *w, const char *key)
{
    put_string(w, key);
    fputc(':', w->out);
}

static void write_frames(struct json_writer *w, const struct profile *p, int full_filenames)
{
    put_raw(w, "\"shared\":{\"frames\":[");
    for (uint32_t i = 0; i < p->nframes; i++) {
        const struct profile_frame *f = &p->frames[i];
        const char *file = profile_str(p, full_filenames ? f->filename : f->short_file);
        if (file[0] == '\0')
            file = profile_str(p, full_filenames ? f->short_file : f->filename);
        put_raw(w, i ? ",\n{" : "\n{");
        put_key(w, "name");
        put_string(w, profile_str(p, f->name));
        if (f->kind != PROFILE_FRAME_SYNTH && file[0] != '\0') {
            fputc(',', w->out);
            put_key(w, "file");
            put_string(w, file);
            if (f->line > 0)
                fprintf(w->out, ",\"line\":%" PRId32, f->line);
        }
        fputc('}', w->out);
    }
    put_raw(w, "]}");
}

/* "Thread <os tid> <name>", prefixed by the process when the profile spans
 * several.  Falls back to the interpreter's thread id when the kernel's is
 * unknown. */
static void write_profile_name(struct json_writer *w, const struct profile *p,
                               const struct profile_thread *t, int several_pids)
{
    const char *name = profile_str(p, t->name);
    uint64_t tid = t->os_thread_id ? t->os_thread_id : t->thread_id;
    char prefix[96];
    if (several_pids)
        snprintf(prefix, sizeof prefix, "Process %" PRIu32 " Thread %" PRIu64, t->pid, tid);
    else
        snprintf(prefix, sizeof prefix, "Thread %" PRIu64, tid);
    size_t len = strlen(prefix) + 1 + strlen(name) + 1;
    char *full = malloc(len);
    if (full == NULL) {
        w->failed = 1;
        return;
    }
    snprintf(full, len, name[0] ? "%s %s" : "%s", prefix, name);
    put_string(w, full);
    free(full);
}

/* One sampled profile: the runs of one thread (`run_ids`, in timeline order).
 * Weights are seconds when the rate is known, else sample counts. */
static void write_thread_profile(struct json_writer *w, const struct profile *p,
                                 const struct profile_thread *t, int several_pids,
                                 const size_t *run_ids, size_t nruns)
{
    double rate = p->meta.rate_hz;
    int in_seconds = rate > 0;

    put_raw(w, "{\"type\":\"sampled\",\"name\":");
    write_profile_name(w, p, t, several_pids);
    put_raw(w, in_seconds ? ",\"unit\":\"seconds\"" : ",\"unit\":\"none\"");
    put_raw(w, ",\"startValue\":0,\"endValue\":");
    uint64_t samples = 0;
    for (size_t i = 0; i < nruns; i++)
        samples += p->runs[run_ids[i]].count;
    if (in_seconds)
        put_real(w, (double)samples / rate);
    else
        fprintf(w->out, "%" PRIu64, samples);

    put_raw(w, ",\n\"samples\":[");
    for (size_t i = 0; i < nruns; i++) {
        const struct profile_stack *s = &p->stacks[p->runs[run_ids[i]].stack];
        const uint32_t *frames = profile_stack_frames(p, s);
        put_raw(w, i ? ",[" : "[");
        for (uint32_t d = 0; d < s->depth; d++)
            fprintf(w->out, d ? ",%" PRIu32 : "%" PRIu32, frames[d]);
        fputc(']', w->out);
    }
    put_raw(w, "],\n\"weights\":[");
    for (size_t i = 0; i < nruns; i++) {
        uint64_t count = p->runs[run_ids[i]].count;
        if (i)
            fputc(',', w->out);
        if (in_seconds)
            put_real(w, (double)count / rate);
        else
            fprintf(w->out, "%" PRIu64, count);
    }
    put_raw(w, "]}");
}

int render_speedscope(const struct profile *p, const struct render_opts *o, FILE *out,
                      struct pm_error *err)
{
    int full_filenames = o ? o->full_filenames : 0;
    size_t *run_ids = NULL, *first = NULL;
    struct json_writer w = { out, json_real(0.0), 0 };
    if (w.real == NULL || render_runs_by_thread(p, &run_ids, &first) != 0) {
        json_decref(w.real);
        return pm_fail(err, PM_ENOMEM, "out of memory rendering speedscope");
    }

    int several_pids = 0;
    for (uint32_t t = 1; t < p->nthreads; t++)
        if (p->threads[t].pid != p->threads[0].pid)
            several_pids = 1;

    /* Open on the busiest thread. */
    size_t nprofiles = 0, active = 0;
    uint64_t busiest = 0;
    for (uint32_t t = 0; t < p->nthreads; t++) {
        if (first[t + 1] == first[t])
            continue;
        uint64_t samples = 0;
        for (size_t i = first[t]; i < first[t + 1]; i++)
            samples += p->runs[run_ids[i]].count;
        if (samples > busiest) {
            busiest = samples;
            active = nprofiles;
        }
        nprofiles++;
    }

    put_raw(&w, "{\"$schema\":\"" SPEEDSCOPE_SCHEMA "\",\n");
    write_frames(&w, p, full_filenames);
    put_raw(&w, ",\n\"profiles\":[");
    size_t written = 0;
    for (uint32_t t = 0; t < p->nthreads; t++) {
        if (first[t + 1] == first[t])
            continue;
        put_raw(&w, written++ ? ",\n" : "\n");
        write_thread_profile(&w, p, &p->threads[t], several_pids, run_ids + first[t],
                             first[t + 1] - first[t]);
    }
    if (written == 0)  /* keep the file loadable: one empty profile */
        put_raw(&w, "\n{\"type\":\"sampled\",\"name\":\"no samples\",\"unit\":\"none\","
                    "\"startValue\":0,\"endValue\":0,\"samples\":[],\"weights\":[]}");
    put_raw(&w, "],\n");
    put_key(&w, "name");
    put_string(&w, o && o->title ? o->title
                   : p->meta.program[0] ? p->meta.program : "pyrometer");
    fprintf(out, ",\"activeProfileIndex\":%zu,\"exporter\":\"pyrometer\"}\n", active);

    free(run_ids);
    free(first);
    json_decref(w.real);
    if (w.failed)
        return pm_fail(err, PM_ENOMEM, "out of memory encoding speedscope JSON");
    return render_finish(out, "speedscope", err);
}
