/*
 * replay.c — replaying a memory capture (see replay.h).
 *
 * The capture is untrusted: ids are checked against what was defined before
 * them (an unknown stack counts as "no stack"), a free of an address never
 * allocated is ignored (blocks allocated before the tracker started, or by
 * the parent of a forked child), an allocation over a live address replaces
 * it.  The live map is open addressing with backward-shift deletion;
 * anonymous mappings are a list (few), so a munmap may cut one in pieces.
 * Never prints.
 */
#include "replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/text.h"
#include "../python/linetable.h"

struct live_slot {
    uint64_t addr;            /* 0 = empty */
    uint64_t size;
    uint32_t stack;
};

struct region {
    uint64_t addr, size;
    uint32_t stack;
};

struct code {
    uint32_t name, file;
    int firstline;
    const uint8_t *table;
    size_t table_len;
};

struct replay_private {
    struct capture_file f;
    char **strings;
    uint32_t nstrings, strings_cap;
    char **extra;             /* names made up here (C frames without a symbol) */
    uint32_t nextra, extra_cap;
    struct code *codes;
    uint32_t ncodes, codes_cap;
    uint32_t frames_cap, stacks_cap, points_cap, totals_cap;
    uint64_t peak_event;      /* allocation event (1-based) that reached the peak */
    int linetable_kind;
    /* replay state */
    struct live_slot *live;
    size_t live_cap, live_used;
    struct region *regions;
    size_t nregions, regions_cap;
    uint64_t live_bytes;
};

static const char *string_at(const struct replay_private *p, uint64_t id)
{
    return id > 0 && id <= p->nstrings ? p->strings[id] : "";
}

/* ---- live map ---------------------------------------------------------------- */

static uint64_t addr_hash(uint64_t a)
{
    a ^= a >> 33;
    a *= 0xff51afd7ed558ccdULL;
    a ^= a >> 33;
    return a;
}

static int live_grow(struct replay_private *p)
{
    size_t cap = p->live_cap ? p->live_cap * 2 : 1u << 16;
    struct live_slot *n = calloc(cap, sizeof *n);
    if (n == NULL)
        return -1;
    for (size_t i = 0; i < p->live_cap; i++) {
        if (p->live[i].addr == 0)
            continue;
        size_t j = addr_hash(p->live[i].addr) & (cap - 1);
        while (n[j].addr)
            j = (j + 1) & (cap - 1);
        n[j] = p->live[i];
    }
    free(p->live);
    p->live = n;
    p->live_cap = cap;
    return 0;
}

/* Remove addr; returns 1 with its size and stack when it was live. */
static int live_remove(struct replay_private *p, uint64_t addr, uint64_t *size, uint32_t *stack)
{
    if (p->live_cap == 0 || addr == 0)
        return 0;
    size_t mask = p->live_cap - 1, i = addr_hash(addr) & mask;
    while (p->live[i].addr != addr) {
        if (p->live[i].addr == 0)
            return 0;
        i = (i + 1) & mask;
    }
    *size = p->live[i].size;
    *stack = p->live[i].stack;
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (p->live[j].addr == 0)
            break;
        size_t home = addr_hash(p->live[j].addr) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            p->live[hole] = p->live[j];
            hole = j;
        }
    }
    p->live[hole].addr = 0;
    p->live_used--;
    return 1;
}

static int live_add(struct replay_private *p, uint64_t addr, uint64_t size, uint32_t stack)
{
    if ((p->live_used + 1) * 4 > p->live_cap * 3 && live_grow(p) != 0)
        return -1;
    size_t mask = p->live_cap - 1, i = addr_hash(addr) & mask;
    while (p->live[i].addr != 0)
        i = (i + 1) & mask;
    p->live[i] = (struct live_slot){addr, size, stack};
    p->live_used++;
    return 0;
}

/* ---- the replay ------------------------------------------------------------- */

static void meta(struct replay *r, const struct capture_record *rec)
{
    char key[64], value[1024];
    size_t kl = rec->len < sizeof key - 1 ? rec->len : sizeof key - 1;
    size_t vl = rec->len2 < sizeof value - 1 ? rec->len2 : sizeof value - 1;
    memcpy(key, rec->data, kl);
    key[kl] = '\0';
    memcpy(value, rec->data2, vl);
    value[vl] = '\0';
    if (strcmp(key, "pid") == 0)
        r->pid = atoi(value);
    else if (strcmp(key, "python") == 0)
        snprintf(r->python, sizeof r->python, "%.31s", value);
    else if (strcmp(key, "command") == 0) {
        snprintf(r->command, sizeof r->command, "%.1000s", value);
        text_one_line(r->command);   /* `python -c` code, escapes: one printable line */
    } else if (strcmp(key, "exe") == 0) {
        snprintf(r->exe, sizeof r->exe, "%.1000s", value);
        text_one_line(r->exe);
    } else if (strcmp(key, "sample_bytes") == 0)
        r->sample_bytes = strtoull(value, NULL, 10);
    else if (strcmp(key, "start_unix_ns") == 0)
        r->start_unix_ns = strtoull(value, NULL, 10);
    else if (strcmp(key, "linetable") == 0)
        r->priv->linetable_kind = atoi(value);
}

static char *dup_bytes(const uint8_t *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
        /* a NUL inside would cut labels short: make it visible instead */
        for (size_t i = 0; i < n; i++)
            if (c[i] == '\0')
                c[i] = '?';
    }
    return c;
}

static int define(struct replay *r, const struct capture_record *rec)
{
    struct replay_private *p = r->priv;
    switch (rec->tag) {
    case CAPTURE_STRING: {
        if (capture_grow((void **)&p->strings, &p->strings_cap, p->nstrings + 1,
                         sizeof *p->strings))
            return -1;
        char *s = dup_bytes(rec->data, rec->len);
        if (s == NULL)
            return -1;
        p->strings[++p->nstrings] = s;
        return 0;
    }
    case CAPTURE_CODE:
        if (capture_grow((void **)&p->codes, &p->codes_cap, p->ncodes + 1, sizeof *p->codes))
            return -1;
        p->codes[++p->ncodes] = (struct code){(uint32_t)(rec->a <= p->nstrings ? rec->a : 0),
                                              (uint32_t)(rec->b <= p->nstrings ? rec->b : 0),
                                              (int)rec->s, rec->data, rec->len};
        return 0;
    case CAPTURE_PYFRAME:
    case CAPTURE_NATFRAME: {
        if (capture_grow((void **)&r->frames, &p->frames_cap, r->nframes + 1, sizeof *r->frames))
            return -1;
        struct replay_frame *fr = &r->frames[++r->nframes];
        if (rec->tag == CAPTURE_PYFRAME) {
            const struct code *c = rec->a > 0 && rec->a <= p->ncodes ? &p->codes[rec->a] : NULL;
            fr->kind = REPLAY_PYTHON;
            fr->name = c ? string_at(p, c->name) : "<unknown>";
            fr->filename = c ? string_at(p, c->file) : "";
            fr->line = 0;
            if (c && p->linetable_kind >= PY_LINES_LNOTAB && p->linetable_kind <= PY_LINES_LNOTAB27) {
                int line = linetable_line((enum py_linetable_kind)p->linetable_kind, c->table,
                                          c->table_len, c->firstline, rec->s);
                fr->line = line > 0 ? line : c->firstline > 0 ? c->firstline : 0;
            }
        } else {
            fr->kind = REPLAY_NATIVE;
            const char *lib = string_at(p, rec->a), *sym = string_at(p, rec->c);
            fr->filename = lib;
            fr->line = 0;
            if (sym[0]) {
                fr->name = sym;
            } else {
                /* no exported symbol covers it: name it by place */
                const char *base = strrchr(lib, '/');
                base = base ? base + 1 : lib[0] ? lib : "?";
                char buf[512];
                snprintf(buf, sizeof buf, "%s+0x%llx", base, (unsigned long long)rec->b);
                if (capture_grow((void **)&p->extra, &p->extra_cap, p->nextra + 1,
                                 sizeof *p->extra))
                    return -1;
                char *s = strdup(buf);
                if (s == NULL)
                    return -1;
                /* kept apart: the capture's string ids must not shift */
                p->extra[p->nextra++] = s;
                fr->name = s;
            }
        }
        return 0;
    }
    case CAPTURE_STACK: {
        if (capture_grow((void **)&r->stacks, &p->stacks_cap, r->nstacks + 1, sizeof *r->stacks))
            return -1;
        uint32_t parent = rec->a <= r->nstacks ? (uint32_t)rec->a : 0;
        uint32_t frame = rec->b > 0 && rec->b <= r->nframes ? (uint32_t)rec->b : 0;
        struct replay_stack *s = &r->stacks[++r->nstacks];
        s->parent = parent;
        s->frame = frame;
        s->depth = (parent ? r->stacks[parent].depth : 0) + 1;
        return 0;
    }
    default:
        return 0;
    }
}

static void snapshot(struct replay *r, int peak)
{
    struct replay_private *p = r->priv;
    for (uint32_t i = 0; i <= r->nstacks; i++) {
        if (peak) {
            r->totals[i].peak_bytes = r->totals[i].peak_count = 0;
        } else {
            r->totals[i].leak_bytes = r->totals[i].leak_count = 0;
        }
    }
    for (size_t i = 0; i < p->live_cap; i++) {
        const struct live_slot *s = &p->live[i];
        if (s->addr == 0)
            continue;
        struct replay_totals *t = &r->totals[s->stack <= r->nstacks ? s->stack : 0];
        if (peak) {
            t->peak_bytes += s->size;
            t->peak_count++;
        } else {
            t->leak_bytes += s->size;
            t->leak_count++;
        }
    }
    for (size_t i = 0; i < p->nregions; i++) {
        const struct region *g = &p->regions[i];
        struct replay_totals *t = &r->totals[g->stack <= r->nstacks ? g->stack : 0];
        if (peak) {
            t->peak_bytes += g->size;
            t->peak_count++;
        } else {
            t->leak_bytes += g->size;
            t->leak_count++;
        }
    }
    if (!peak)
        r->leak_bytes = p->live_bytes;
}

static int region_add(struct replay_private *p, uint64_t addr, uint64_t size, uint32_t stack)
{
    if (p->nregions == p->regions_cap) {
        size_t cap = p->regions_cap ? p->regions_cap * 2 : 64;
        struct region *n = realloc(p->regions, cap * sizeof *n);
        if (n == NULL)
            return -1;
        p->regions = n;
        p->regions_cap = cap;
    }
    p->regions[p->nregions++] = (struct region){addr, size, stack};
    return 0;
}

/* Unmap [addr, addr+len) from the tracked regions (cutting them as needed). */
static int region_unmap(struct replay_private *p, uint64_t addr, uint64_t len)
{
    uint64_t end = addr + len < addr ? UINT64_MAX : addr + len;
    for (size_t i = 0; i < p->nregions;) {
        struct region g = p->regions[i];
        uint64_t gend = g.addr + g.size;
        if (gend <= addr || g.addr >= end) {
            i++;
            continue;
        }
        p->regions[i] = p->regions[--p->nregions];
        if (g.addr < addr) {
            if (region_add(p, g.addr, addr - g.addr, g.stack))
                return -1;
            p->live_bytes += addr - g.addr;
        }
        if (gend > end) {
            if (region_add(p, end, gend - end, g.stack))
                return -1;
            p->live_bytes += gend - end;
        }
        p->live_bytes -= g.size;
    }
    return 0;
}

/* One pass over the capture.  Pass 1 builds the tables and every figure but
 * the peak's stacks; pass 2 stops at allocation event `stop_at` (the peak)
 * and takes the snapshot. */
static int replay_pass(struct replay *r, int pass, uint64_t stop_at, replay_progress_fn progress,
                       void *ctx, struct pm_error *err)
{
    struct replay_private *p = r->priv;
    struct capture_record rec;
    uint64_t t_ns = 0, allocs = 0, interval_max = 0;
    capture_rewind(&p->f);
    p->live_bytes = 0;
    p->nregions = 0;
    if (p->live)
        memset(p->live, 0, p->live_cap * sizeof *p->live);
    p->live_used = 0;
    uint64_t n = 0;
    while (capture_next(&p->f, &rec)) {
        if (progress && (++n & 0xfffff) == 0)
            progress(capture_progress(&p->f), pass, ctx);
        switch (rec.tag) {
        case CAPTURE_META:
            if (pass == 1)
                meta(r, &rec);
            break;
        case CAPTURE_NOTE:
            if (pass == 1 && r->nnotes < 4) {
                size_t l = rec.len < 255 ? rec.len : 255;
                memcpy(r->notes[r->nnotes], rec.data, l);
                r->notes[r->nnotes++][l] = '\0';
            }
            break;
        case CAPTURE_STRING:
        case CAPTURE_CODE:
        case CAPTURE_PYFRAME:
        case CAPTURE_NATFRAME:
        case CAPTURE_STACK:
            if (pass == 1) {
                if (define(r, &rec) != 0)
                    return pm_fail(err, PM_ENOMEM, "out of memory replaying the capture");
                if (capture_grow((void **)&r->totals, &p->totals_cap, r->nstacks,
                                 sizeof *r->totals))
                    return pm_fail(err, PM_ENOMEM, "out of memory replaying the capture");
            }
            break;
        case CAPTURE_THREAD:
            if (pass == 1 && rec.a > r->threads)
                r->threads = rec.a;
            break;
        case CAPTURE_ALLOC:
        case CAPTURE_MMAP: {
            uint64_t addr = rec.addr;
            /* the tracker never records a failed allocation: an ALLOC at
             * address 0 is a damaged record (and 0 marks a free slot) */
            if (rec.tag == CAPTURE_ALLOC && addr == 0)
                break;
            uint32_t stack = rec.b <= r->nstacks ? (uint32_t)rec.b : 0;
            if (rec.tag == CAPTURE_ALLOC) {
                uint64_t old_size;
                uint32_t old_stack;
                if (live_remove(p, addr, &old_size, &old_stack))
                    p->live_bytes -= old_size;
                if (live_add(p, addr, rec.a, stack) != 0)
                    return pm_fail(err, PM_ENOMEM, "out of memory replaying the capture");
            } else {
                if (region_unmap(p, addr, rec.a) != 0 || region_add(p, addr, rec.a, stack) != 0)
                    return pm_fail(err, PM_ENOMEM, "out of memory replaying the capture");
            }
            p->live_bytes += rec.a;
            allocs++;
            if (p->live_bytes > interval_max)
                interval_max = p->live_bytes;
            if (pass == 1) {
                r->alloc_events++;
                r->total_allocated += rec.a;
                r->totals[stack].alloc_bytes += rec.a;
                r->totals[stack].alloc_count++;
                if (p->live_bytes > r->peak_bytes) {
                    r->peak_bytes = p->live_bytes;
                    r->peak_t_ns = t_ns;
                    p->peak_event = allocs;
                }
            } else if (allocs == stop_at) {
                snapshot(r, 1);
                return 0;
            }
            break;
        }
        case CAPTURE_FREE: {
            uint64_t addr = rec.addr;
            uint64_t size;
            uint32_t stack;
            if (live_remove(p, addr, &size, &stack))
                p->live_bytes -= size;
            if (pass == 1)
                r->free_events++;
            break;
        }
        case CAPTURE_MUNMAP: {
            uint64_t addr = rec.addr;
            if (region_unmap(p, addr, rec.a) != 0)
                return pm_fail(err, PM_ENOMEM, "out of memory replaying the capture");
            if (pass == 1)
                r->free_events++;
            break;
        }
        case CAPTURE_TIME:
            /* threads write their own TIME records: keep time monotonic */
            if (rec.a > t_ns)
                t_ns = rec.a;
            if (pass == 1) {
                if (capture_grow((void **)&r->points, &p->points_cap, (uint32_t)r->npoints,
                         sizeof *r->points))
                    return pm_fail(err, PM_ENOMEM, "out of memory replaying the capture");
                r->points[r->npoints++] = (struct replay_point){
                    t_ns, p->live_bytes,
                    interval_max > p->live_bytes ? interval_max : p->live_bytes, rec.b};
                if (rec.b > r->max_rss)
                    r->max_rss = rec.b;
                r->duration_ns = t_ns;
            }
            interval_max = p->live_bytes;
            break;
        case CAPTURE_FINALIZING:
            if (pass == 1 && !r->finalizing) {
                r->finalizing = 1;
                snapshot(r, 0);
            }
            break;
        case CAPTURE_END:
            if (pass == 1)
                r->ended = 1;
            break;
        default:
            break;
        }
    }
    if (pass == 1) {
        r->events = p->f.records;
        r->end_bytes = p->live_bytes;
        r->truncated = p->f.truncated;
        snprintf(r->truncated_why, sizeof r->truncated_why, "%s", p->f.why);
        if (!r->finalizing)
            snapshot(r, 0);
    }
    return 0;
}

static int replay_all(struct replay *r, replay_progress_fn progress, void *ctx,
                      struct pm_error *err)
{
    struct replay_private *p = r->priv;
    if (capture_grow((void **)&r->totals, &p->totals_cap, 0, sizeof *r->totals))
        return pm_fail(err, PM_ENOMEM, "out of memory replaying the capture");
    r->flags = p->f.flags;
    r->capture_bytes = p->f.size;
    if (replay_pass(r, 1, 0, progress, ctx, err) != 0)
        return -1;
    if (p->peak_event && replay_pass(r, 2, p->peak_event, progress, ctx, err) != 0)
        return -1;
    /* the live map is not needed any more */
    free(p->live);
    p->live = NULL;
    p->live_cap = p->live_used = 0;
    return 0;
}

int replay_run(const char *path, struct replay *r, replay_progress_fn progress, void *ctx,
               struct pm_error *err)
{
    memset(r, 0, sizeof *r);
    r->priv = calloc(1, sizeof *r->priv);
    if (r->priv == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    if (capture_open(path, &r->priv->f, err) != 0)
        return -1;
    return replay_all(r, progress, ctx, err);
}

int replay_buffer(const uint8_t *buf, size_t len, struct replay *r, struct pm_error *err)
{
    memset(r, 0, sizeof *r);
    r->priv = calloc(1, sizeof *r->priv);
    if (r->priv == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    if (capture_open_buffer(buf, len, &r->priv->f, err) != 0)
        return -1;
    return replay_all(r, NULL, NULL, err);
}

void replay_free(struct replay *r)
{
    struct replay_private *p = r->priv;
    if (p) {
        for (uint32_t i = 1; i <= p->nstrings; i++)
            free(p->strings[i]);
        free(p->strings);
        for (uint32_t i = 0; i < p->nextra; i++)
            free(p->extra[i]);
        free(p->extra);
        free(p->codes);
        free(p->live);
        free(p->regions);
        capture_close(&p->f);
        free(p);
    }
    free(r->frames);
    free(r->stacks);
    free(r->totals);
    free(r->points);
    memset(r, 0, sizeof *r);
}
