/*
 * threadnames.c — threading's thread names, read from the target and cached.
 *
 * The path, all through the reader: interp->modules (3.12+
 * interp->imports.modules) → ['threading'] → PyModuleObject.md_dict →
 * ['_active'] → each {ident: Thread} → Thread._name (an instance attribute:
 * a __dict__, or 3.11+ managed dict / inline values, see pydict.c).
 *
 * Invariants: a refresh replaces every name of its interpreter at once and
 * keeps the old ones when it fails; the cache never holds more than
 * PY_DICT_MAX_ENTRIES names per interpreter.  Never prints.
 */
#include "threadnames.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pydict.h"

#define MAX_INTERPS 16

static uint64_t coarse_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct name_entry {
    uint64_t interp, ident;
    char name[PY_THREAD_NAME_MAX];
};

struct interp_state {
    uint64_t interp;            /* 0 = unused */
    uint64_t read_at;           /* CLOCK_MONOTONIC_COARSE ns of the last read */
};

struct py_thread_names {
    struct name_entry *entries;
    size_t count, cap;
    struct interp_state interps[MAX_INTERPS];
    uint64_t lookups;
};

struct py_thread_names *py_thread_names_new(void)
{
    return calloc(1, sizeof(struct py_thread_names));
}

void py_thread_names_free(struct py_thread_names *tn)
{
    if (tn == NULL)
        return;
    free(tn->entries);
    free(tn);
}

static struct interp_state *interp_state(struct py_thread_names *tn, uint64_t interp)
{
    for (size_t i = 0; i < MAX_INTERPS; i++)
        if (tn->interps[i].interp == interp)
            return &tn->interps[i];
    return NULL;
}

/* The names of interp's threads into a new array (*out, *n). */
static int collect_names(struct py_objctx *ctx, uint64_t interp, struct name_entry **out,
                         size_t *n, struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    uint64_t modules, threading, md_dict, active, used;
    enum py_kind kind;
    uint64_t type;
    *out = NULL;
    *n = 0;
    if (reader_u64(ctx->reader, interp + (uint64_t)l->interp_modules, &modules, err) != 0)
        return -1;
    if (modules == 0)
        return 0;
    if (py_dict_get_str(ctx, modules, "threading", &threading, err) != 0)
        return -1;
    if (threading == 0)
        return 0;
    if (py_object_kind(ctx, threading, &kind, &type, err) != 0)
        return -1;
    if (kind != PY_KIND_MODULE)
        return 0;
    if (reader_u64(ctx->reader, threading + (uint64_t)l->module_dict, &md_dict, err) != 0 ||
        py_dict_get_str(ctx, md_dict, "_active", &active, err) != 0)
        return -1;
    if (active == 0)
        return 0;
    if (py_object_kind(ctx, active, &kind, &type, err) != 0)
        return -1;
    if (kind != PY_KIND_DICT)
        return pm_fail(err, PM_ETORN, "threading._active is not a dict");
    struct py_dict_item *items = malloc(PY_DICT_MAX_ENTRIES * sizeof *items);
    if (items == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    size_t count;
    if (py_dict_items(ctx, active, items, PY_DICT_MAX_ENTRIES, &count, &used, err) != 0) {
        free(items);
        return -1;
    }
    struct name_entry *fresh = calloc(count ? count : 1, sizeof *fresh);
    if (fresh == NULL) {
        free(items);
        return pm_fail(err, PM_ENOMEM, "out of memory");
    }
    size_t filled = 0;
    for (size_t i = 0; i < count; i++) {
        struct name_entry e = {.interp = interp};
        uint64_t name;
        /* one unreadable thread does not hide the others */
        if (py_long_u64(ctx, items[i].key, &e.ident, NULL) != 0 ||
            py_object_attr(ctx, items[i].value, "_name", &name, NULL) != 0 || name == 0 ||
            py_str_utf8(ctx, name, e.name, sizeof e.name, NULL) != 0)
            continue;
        fresh[filled++] = e;
    }
    free(items);
    *out = fresh;
    *n = filled;
    return 0;
}

int py_thread_names_refresh(struct py_thread_names *tn, struct py_objctx *ctx, uint64_t interp,
                            struct pm_error *err)
{
    struct interp_state *st = interp_state(tn, interp);
    if (st == NULL)
        st = interp_state(tn, 0);
    if (st == NULL)
        st = &tn->interps[interp % MAX_INTERPS];  /* forget one: it is only a cache */
    st->interp = interp;
    st->read_at = coarse_now_ns();
    struct name_entry *fresh;
    size_t n;
    if (collect_names(ctx, interp, &fresh, &n, err) != 0)
        return -1;
    /* drop interp's old names, then append the new ones */
    size_t kept = 0;
    for (size_t i = 0; i < tn->count; i++)
        if (tn->entries[i].interp != interp)
            tn->entries[kept++] = tn->entries[i];
    tn->count = kept;
    if (tn->count + n > tn->cap) {
        size_t cap = tn->count + n;
        struct name_entry *grown = realloc(tn->entries, cap * sizeof *grown);
        if (grown == NULL) {
            free(fresh);
            return pm_fail(err, PM_ENOMEM, "out of memory");
        }
        tn->entries = grown;
        tn->cap = cap;
    }
    if (n > 0)
        memcpy(tn->entries + tn->count, fresh, n * sizeof *fresh);
    tn->count += n;
    free(fresh);
    return 0;
}

static const char *find_name(const struct py_thread_names *tn, uint64_t interp, uint64_t ident)
{
    for (size_t i = 0; i < tn->count; i++)
        if (tn->entries[i].interp == interp && tn->entries[i].ident == ident)
            return tn->entries[i].name;
    return NULL;
}

const char *py_thread_name(struct py_thread_names *tn, struct py_objctx *ctx,
                           const struct py_thread *t)
{
    tn->lookups++;
    const struct interp_state *st = interp_state(tn, t->interp);
    const char *name = find_name(tn, t->interp, t->thread_id);
    uint64_t age = st ? coarse_now_ns() - st->read_at : UINT64_MAX;
    if (st == NULL || age >= PY_THREAD_NAMES_REFRESH_NS ||
        (name == NULL && age >= PY_THREAD_NAMES_MISS_GAP_NS)) {
        if (py_thread_names_refresh(tn, ctx, t->interp, NULL) == 0)
            name = find_name(tn, t->interp, t->thread_id);
    }
    return name;
}
