/*
 * top_table.c — the "hottest functions" table printed after a recording:
 * per function (name and file, whatever the line), own samples (as the
 * leaf) and total samples (anywhere in the stack, counted once per stack),
 * sorted by own.  Sees only the profile; writes only to the FILE given.
 */
#include <stdlib.h>
#include <string.h>

#include "render.h"

struct top_row {
    uint32_t frame;        /* a representative frame of the function */
    uint64_t own, total;
    uint32_t seen_stack;   /* last stack counted into total, + 1 */
};

static int by_own_desc(const void *a, const void *b)
{
    const struct top_row *x = a, *y = b;
    if (x->own != y->own)
        return x->own < y->own ? 1 : -1;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

/* Map every frame to a function row: frames with the same name, file and
 * kind share one.  Returns the number of rows; fn_of[frame] = row. */
static uint32_t group_by_function(const struct profile *p, uint32_t *fn_of, struct top_row *rows)
{
    uint32_t nrows = 0;
    size_t cap = 1;
    while (cap < (size_t)p->nframes * 2)
        cap *= 2;
    uint32_t *slots = malloc(cap * sizeof *slots);
    if (slots == NULL)
        return UINT32_MAX;
    memset(slots, 0xff, cap * sizeof *slots);
    for (uint32_t f = 0; f < p->nframes; f++) {
        const struct profile_frame *fr = &p->frames[f];
        uint64_t h = ((uint64_t)fr->name * 0x9E3779B97F4A7C15ull) ^
                     ((uint64_t)fr->filename * 0xC2B2AE3D27D4EB4Full) ^ fr->kind;
        size_t s = (size_t)(h >> 17) & (cap - 1);
        for (;; s = (s + 1) & (cap - 1)) {
            if (slots[s] == UINT32_MAX) {
                slots[s] = nrows;
                rows[nrows].frame = f;
                fn_of[f] = nrows++;
                break;
            }
            const struct profile_frame *other = &p->frames[rows[slots[s]].frame];
            if (other->name == fr->name && other->filename == fr->filename &&
                other->kind == fr->kind) {
                fn_of[f] = slots[s];
                break;
            }
        }
    }
    free(slots);
    return nrows;
}

int render_top_table(const struct profile *p, size_t limit, const struct render_opts *o,
                     FILE *out, struct pm_error *err)
{
    uint64_t total = profile_total(p);
    if (total == 0 || p->nframes == 0) {
        fprintf(out, "  (no samples)\n");
        return 0;
    }
    struct top_row *rows = calloc(p->nframes, sizeof *rows);
    uint32_t *fn_of = calloc(p->nframes, sizeof *fn_of);
    uint32_t nrows = rows && fn_of ? group_by_function(p, fn_of, rows) : UINT32_MAX;
    if (nrows == UINT32_MAX) {
        free(rows);
        free(fn_of);
        return pm_fail(err, PM_ENOMEM, "out of memory");
    }
    for (uint32_t s = 0; s < p->nstacks; s++) {
        const struct profile_stack *st = &p->stacks[s];
        const uint32_t *frames = profile_stack_frames(p, st);
        for (uint32_t d = 0; d < st->depth; d++) {
            struct top_row *r = &rows[fn_of[frames[d]]];
            if (r->seen_stack != s + 1) {
                r->seen_stack = s + 1;
                r->total += st->count;
            }
        }
        if (st->depth)
            rows[fn_of[frames[st->depth - 1]]].own += st->count;
    }
    qsort(rows, nrows, sizeof *rows, by_own_desc);
    fprintf(out, "  %6s %6s  %s\n", "own", "total", "function (file)");
    for (size_t i = 0; i < limit && i < nrows && rows[i].own > 0; i++) {
        const struct profile_frame *fr = &p->frames[rows[i].frame];
        const char *file = profile_str(p, o && o->full_filenames ? fr->filename : fr->short_file);
        fprintf(out, "  %5.1f%% %5.1f%%  %s%s%s%s\n", 100.0 * (double)rows[i].own / (double)total,
                100.0 * (double)rows[i].total / (double)total, profile_str(p, fr->name),
                file[0] ? " (" : "", file, file[0] ? ")" : "");
    }
    free(rows);
    free(fn_of);
    return 0;
}
