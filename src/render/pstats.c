/*
 * pstats.c — the file cProfile writes and Python's `pstats.Stats(path)`,
 * SnakeViz, tuna and gprof2dot read: the marshal (Python's own serialisation)
 * of one dict
 *     {(filename, firstlineno, funcname): (cc, nc, tt, ct, callers)}
 * with callers = {(filename, firstlineno, funcname): (cc, nc, tt, ct)}.
 *
 * Owns deriving cProfile's numbers from samples, and writing marshal by hand
 * (type codes: '{' dict ended by '0', '(' tuple with a 4-byte count, 'i'
 * int32, 'l' arbitrary int in 15-bit digits, 'g' 8-byte IEEE double, 'u'
 * UTF-8 str with a 4-byte length; all little-endian; no references).
 *
 * How samples become cProfile's numbers (every sample is 1 / rate seconds,
 * or 1 "second" per sample when the rate is unknown):
 *   - a function is (filename, name), with the full path as the interpreter
 *     has it (what cProfile records), and as its firstlineno the smallest
 *     line seen for it; native and synthetic frames are ('~', 0, name), like
 *     cProfile's built-ins;
 *   - tt (own time) = samples in which it is the leaf;
 *   - ct (cumulative time) = samples in which it appears at all, counted once
 *     per sample however deep it recurses;
 *   - nc and cc (calls, primitive calls): a sampler sees no calls, so both
 *     are the number of samples in which the function appears (ct in
 *     samples): "calls" reads as "samples seen in", and per-call time
 *     (ct / nc) as the sampling period;
 *   - callers[caller] of a function: from each stack's adjacent pairs
 *     (caller directly above it), nc = cc = ct = samples containing that pair
 *     (once per sample), tt = samples in which the function is the leaf and
 *     that caller is directly above it.
 * Strings are cleaned to valid UTF-8 (marshal's 'u' must be).  Entries are
 * written in (filename, name) order so the output is deterministic.  A
 * profile without samples still gives a loadable file (pstats refuses an
 * empty dict): one entry ('~', 0, '<no samples>') with zero calls and time.
 *
 * Sees only the aggregated profile; never reads process memory, never prints
 * to the terminal; writes only to the FILE it is given.
 */
#include "render.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define NO_FILE UINT32_MAX  /* a function without a source file: '~' */

struct pstats_function {
    uint32_t file;      /* profile string id, or NO_FILE */
    uint32_t name;      /* profile string id */
    int32_t first_line; /* smallest positive line seen, 0 if none */
    uint64_t own;       /* samples as the leaf */
    uint64_t total;     /* samples containing it */
    uint64_t stamp;     /* 1 + the last stack counted in `total` */
};

/* One (caller, callee) pair: during collection one per stack position,
 * after aggregation one per distinct pair. */
struct pstats_edge {
    uint32_t callee, caller;
    uint32_t stack;
    int leaf;           /* the callee is the stack's leaf */
    uint64_t count;     /* collection: the stack's count; after: samples */
    uint64_t own;       /* after aggregation: samples with the callee as leaf */
};

struct frame_key {
    uint32_t file, name, frame;
};

static int compare_frame_keys(const void *a, const void *b)
{
    const struct frame_key *x = a, *y = b;
    if (x->file != y->file) {
        if (x->file == NO_FILE || y->file == NO_FILE)
            return x->file == NO_FILE ? 1 : -1;
        return x->file < y->file ? -1 : 1;
    }
    if (x->name != y->name)
        return x->name < y->name ? -1 : 1;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

static int compare_edges(const void *a, const void *b)
{
    const struct pstats_edge *x = a, *y = b;
    if (x->callee != y->callee)
        return x->callee < y->callee ? -1 : 1;
    if (x->caller != y->caller)
        return x->caller < y->caller ? -1 : 1;
    return x->stack < y->stack ? -1 : x->stack > y->stack;
}

static uint32_t function_file(const struct profile *p, const struct profile_frame *f)
{
    if (f->kind != PROFILE_FRAME_PYTHON)
        return NO_FILE;
    if (profile_str(p, f->filename)[0])
        return f->filename;
    if (profile_str(p, f->short_file)[0])
        return f->short_file;
    return NO_FILE;
}

struct pstats_data {
    struct pstats_function *functions;
    uint32_t nfunctions;
    uint32_t *function_of_frame;
    struct pstats_edge *edges;
    size_t nedges;
};

/* Functions by (file, name), in that order.  Returns 0 or -1 (out of memory). */
static int build_functions(const struct profile *p, struct pstats_data *d)
{
    size_t n = p->nframes ? p->nframes : 1;
    struct frame_key *keys = malloc(n * sizeof *keys);
    d->functions = calloc(n, sizeof *d->functions);
    d->function_of_frame = malloc(n * sizeof *d->function_of_frame);
    if (keys == NULL || d->functions == NULL || d->function_of_frame == NULL) {
        free(keys);
        return -1;
    }
    for (uint32_t i = 0; i < p->nframes; i++)
        keys[i] = (struct frame_key){ function_file(p, &p->frames[i]), p->frames[i].name, i };
    qsort(keys, p->nframes, sizeof *keys, compare_frame_keys);
    for (uint32_t i = 0; i < p->nframes; i++) {
        const struct profile_frame *f = &p->frames[keys[i].frame];
        if (i == 0 || keys[i].file != keys[i - 1].file || keys[i].name != keys[i - 1].name)
            d->functions[d->nfunctions++] =
                (struct pstats_function){ keys[i].file, keys[i].name, 0, 0, 0, 0 };
        struct pstats_function *fn = &d->functions[d->nfunctions - 1];
        if (fn->file != NO_FILE && f->line > 0 &&
            (fn->first_line == 0 || f->line < fn->first_line))
            fn->first_line = f->line;
        d->function_of_frame[keys[i].frame] = d->nfunctions - 1;
    }
    free(keys);
    return 0;
}

/* Own and total samples per function; caller/callee pairs aggregated.
 * Returns 0 or -1 (out of memory). */
static int count_samples(const struct profile *p, struct pstats_data *d)
{
    size_t npairs = 0;
    for (uint32_t i = 0; i < p->nstacks; i++)
        if (p->stacks[i].count > 0 && p->stacks[i].depth > 1)
            npairs += p->stacks[i].depth - 1;
    d->edges = malloc((npairs ? npairs : 1) * sizeof *d->edges);
    if (d->edges == NULL)
        return -1;

    for (uint32_t i = 0; i < p->nstacks; i++) {
        const struct profile_stack *s = &p->stacks[i];
        if (s->count == 0 || s->depth == 0)
            continue;
        const uint32_t *frames = profile_stack_frames(p, s);
        for (uint32_t k = 0; k < s->depth; k++) {
            struct pstats_function *fn = &d->functions[d->function_of_frame[frames[k]]];
            if (fn->stamp != (uint64_t)i + 1) {
                fn->stamp = (uint64_t)i + 1;
                fn->total += s->count;
            }
            if (k > 0)
                d->edges[d->nedges++] = (struct pstats_edge){
                    d->function_of_frame[frames[k]], d->function_of_frame[frames[k - 1]], i,
                    k + 1 == s->depth, s->count, 0 };
        }
        d->functions[d->function_of_frame[frames[s->depth - 1]]].own += s->count;
    }

    /* Aggregate: one entry per (callee, caller), each stack counted once. */
    qsort(d->edges, d->nedges, sizeof *d->edges, compare_edges);
    size_t out = 0;
    for (size_t i = 0; i < d->nedges;) {
        struct pstats_edge sum = d->edges[i];
        sum.count = 0;
        sum.own = 0;
        size_t j = i;
        while (j < d->nedges && d->edges[j].callee == sum.callee &&
               d->edges[j].caller == sum.caller) {
            size_t k = j;
            int leaf = 0;
            while (k < d->nedges && d->edges[k].callee == sum.callee &&
                   d->edges[k].caller == sum.caller && d->edges[k].stack == d->edges[j].stack)
                leaf |= d->edges[k++].leaf;
            sum.count += d->edges[j].count;
            if (leaf)
                sum.own += d->edges[j].count;
            j = k;
        }
        d->edges[out++] = sum;
        i = j;
    }
    d->nedges = out;
    return 0;
}

/* ---- marshal -------------------------------------------------------------- */

struct marshal_writer {
    FILE *out;
    int failed;  /* out of memory */
};

static void put_u32(struct marshal_writer *w, uint32_t v)
{
    unsigned char b[4] = { (unsigned char)v, (unsigned char)(v >> 8),
                           (unsigned char)(v >> 16), (unsigned char)(v >> 24) };
    fwrite(b, 1, sizeof b, w->out);
}

/* A non-negative integer: 'i' when it fits in int32, else 'l' (a signed
 * digit count, then 15-bit digits, least significant first). */
static void put_int(struct marshal_writer *w, uint64_t v)
{
    if (v <= INT32_MAX) {
        fputc('i', w->out);
        put_u32(w, (uint32_t)v);
        return;
    }
    unsigned char digits[2 * 5];  /* 64 bits: at most 5 digits of 15 bits */
    uint32_t n = 0;
    for (; v != 0; v >>= 15, n++) {
        digits[2 * n] = (unsigned char)(v & 0xff);
        digits[2 * n + 1] = (unsigned char)((v >> 8) & 0x7f);
    }
    fputc('l', w->out);
    put_u32(w, n);
    fwrite(digits, 1, 2 * (size_t)n, w->out);
}

static void put_float(struct marshal_writer *w, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    fputc('g', w->out);
    for (int i = 0; i < 8; i++)
        fputc((int)((bits >> (8 * i)) & 0xff), w->out);
}

static void put_str(struct marshal_writer *w, const char *s)
{
    char *clean = render_utf8_clean(s);
    if (clean == NULL) {
        w->failed = 1;
        return;
    }
    size_t len = strlen(clean);
    fputc('u', w->out);
    put_u32(w, (uint32_t)len);  /* labels are far below 4 GiB */
    fwrite(clean, 1, len, w->out);
    free(clean);
}

static void put_tuple(struct marshal_writer *w, uint32_t n)
{
    fputc('(', w->out);
    put_u32(w, n);
}

/* The key (filename, firstlineno, funcname). */
static void put_function_key(struct marshal_writer *w, const struct profile *p,
                             const struct pstats_function *fn)
{
    put_tuple(w, 3);
    put_str(w, fn->file == NO_FILE ? "~" : profile_str(p, fn->file));
    put_int(w, (uint64_t)(fn->first_line > 0 ? fn->first_line : 0));
    put_str(w, profile_str(p, fn->name));
}

int render_pstats(const struct profile *p, const struct render_opts *o, FILE *out,
                  struct pm_error *err)
{
    (void)o;  /* keys are full paths whatever the labels use: cProfile's */
    struct pstats_data d = { 0 };
    struct marshal_writer w = { out, 0 };
    int rc = -1;
    if (build_functions(p, &d) != 0 || count_samples(p, &d) != 0) {
        pm_fail(err, PM_ENOMEM, "out of memory rendering pstats");
        goto done;
    }
    double seconds = p->meta.rate_hz > 0 ? 1.0 / p->meta.rate_hz : 1.0;

    fputc('{', out);
    size_t edge = 0, written = 0;
    for (uint32_t f = 0; f < d.nfunctions; f++) {
        const struct pstats_function *fn = &d.functions[f];
        while (edge < d.nedges && d.edges[edge].callee < f)
            edge++;
        if (fn->total == 0)
            continue;  /* in no sample (e.g. only in empty-count stacks) */
        put_function_key(&w, p, fn);
        written++;
        put_tuple(&w, 5);
        put_int(&w, fn->total);
        put_int(&w, fn->total);
        put_float(&w, (double)fn->own * seconds);
        put_float(&w, (double)fn->total * seconds);
        fputc('{', out);
        for (; edge < d.nedges && d.edges[edge].callee == f; edge++) {
            const struct pstats_edge *e = &d.edges[edge];
            put_function_key(&w, p, &d.functions[e->caller]);
            put_tuple(&w, 4);
            put_int(&w, e->count);
            put_int(&w, e->count);
            put_float(&w, (double)e->own * seconds);
            put_float(&w, (double)e->count * seconds);
        }
        fputc('0', out);
    }
    if (written == 0) {
        put_tuple(&w, 3);
        put_str(&w, "~");
        put_int(&w, 0);
        put_str(&w, "<no samples>");
        put_tuple(&w, 5);
        put_int(&w, 0);
        put_int(&w, 0);
        put_float(&w, 0.0);
        put_float(&w, 0.0);
        fputs("{0", out);
    }
    fputc('0', out);
    if (w.failed) {
        pm_fail(err, PM_ENOMEM, "out of memory rendering pstats");
        goto done;
    }
    rc = render_finish(out, "pstats", err);

done:
    free(d.functions);
    free(d.function_of_frame);
    free(d.edges);
    return rc;
}
