/*
 * locals.c — a frame's arguments and locals: names from its code object,
 * values from its local slots.
 *
 * Up to 3.10 the slots are co_nlocals locals (named by co_varnames), then
 * cells (co_cellvars), then free variables; an argument captured by an
 * inner function lives in its cell and its own slot is emptied.  From 3.11
 * co_localsplusnames names every slot and co_localspluskinds says what it
 * is (CO_FAST_LOCAL / CELL / FREE / HIDDEN); a cell slot holds its value
 * directly until MAKE_CELL runs, then a cell.  Arguments come first in
 * both: co_argcount (positional-only included), co_kwonlyargcount, then
 * *args and **kwargs when co_flags says so.
 *
 * Invariants: the number of slots is bounded (PY_LOCALS_MAX) and checked
 * against the names tuple; every object is kind-checked before its layout
 * is trusted.  Never prints.
 */
#include "locals.h"

#include <string.h>

struct slot_names {
    uint64_t items[PY_LOCALS_MAX];
    size_t n;
};

static int32_t get_i32(const uint8_t *block, int64_t off)
{
    int32_t v;
    memcpy(&v, block + off, sizeof v);
    return v;
}

static uint64_t get_u64(const uint8_t *block, int64_t off)
{
    uint64_t v;
    memcpy(&v, block + off, sizeof v);
    return v;
}

/* The items of the tuple at addr (at most PY_LOCALS_MAX, else PM_ETORN). */
static int read_tuple(struct py_objctx *ctx, uint64_t addr, struct slot_names *t,
                      struct pm_error *err)
{
    enum py_kind kind;
    uint64_t type;
    int64_t size;
    t->n = 0;
    if (py_object_kind(ctx, addr, &kind, &type, err) != 0)
        return -1;
    if (kind != PY_KIND_TUPLE)
        return pm_fail(err, PM_ETORN, "local names at 0x%llx are not a tuple",
                       (unsigned long long)addr);
    if (reader_u64(ctx->reader, addr + (uint64_t)ctx->layout->ob_size, (uint64_t *)&size, err) != 0)
        return -1;
    if (size < 0 || size > PY_LOCALS_MAX)
        return pm_fail(err, PM_ETORN, "implausible local names tuple at 0x%llx",
                       (unsigned long long)addr);
    t->n = (size_t)size;
    if (t->n > 0 && reader_read(ctx->reader, addr + (uint64_t)ctx->layout->tuple_items, t->items,
                                t->n * 8, err) != 0)
        return -1;
    return 0;
}

/* The content of a cell, or value itself when it is not a cell. */
static uint64_t through_cell(struct py_objctx *ctx, uint64_t value)
{
    enum py_kind kind;
    uint64_t type, ref;
    if (value == 0 || py_object_kind(ctx, value, &kind, &type, NULL) != 0 || kind != PY_KIND_CELL)
        return value;
    if (reader_u64(ctx->reader, value + (uint64_t)ctx->layout->cell_ref, &ref, NULL) != 0)
        return 0;
    return ref;
}

static int add_local(struct py_objctx *ctx, uint64_t name, uint64_t value, int is_arg,
                     struct py_local *out, size_t cap, size_t *count, struct pm_error *err)
{
    if (value == 0 || *count >= cap)
        return 0;
    struct py_local *loc = &out[*count];
    if (py_str_utf8(ctx, name, loc->name, sizeof loc->name, err) != 0)
        return -1;
    loc->value = value;
    loc->is_arg = is_arg;
    (*count)++;
    return 0;
}

static int locals_old(struct py_objctx *ctx, uint64_t frame, const uint8_t *code, size_t nargs,
                      struct py_local *out, size_t cap, size_t *count, struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    static _Thread_local struct slot_names varnames, cellvars;
    static _Thread_local uint64_t values[PY_LOCALS_MAX];
    if (read_tuple(ctx, get_u64(code, l->code_varnames), &varnames, err) != 0 ||
        read_tuple(ctx, get_u64(code, l->code_cellvars), &cellvars, err) != 0)
        return -1;
    int32_t nlocals = get_i32(code, l->code_nlocals);
    if (nlocals < 0 || (size_t)nlocals != varnames.n ||
        varnames.n + cellvars.n > PY_LOCALS_MAX)
        return pm_fail(err, PM_ETORN, "inconsistent local counts in code object");
    size_t nslots = varnames.n + cellvars.n;
    uint64_t slots = frame + (uint64_t)l->frame_localsplus;
    if (nslots > 0 && reader_read(ctx->reader, slots, values, nslots * 8, err) != 0)
        return -1;
    /* an argument captured by an inner function: its value is in its cell */
    for (size_t j = 0; j < cellvars.n; j++) {
        for (size_t k = 0; k < varnames.n; k++) {
            if (varnames.items[k] != cellvars.items[j] || values[k] != 0)
                continue;
            values[k] = through_cell(ctx, values[varnames.n + j]);
            values[varnames.n + j] = 0;
        }
    }
    for (size_t i = 0; i < varnames.n; i++)
        if (add_local(ctx, varnames.items[i], values[i], i < nargs, out, cap, count, err) != 0)
            return -1;
    for (size_t j = 0; j < cellvars.n; j++)
        if (add_local(ctx, cellvars.items[j], through_cell(ctx, values[varnames.n + j]), 0, out,
                      cap, count, err) != 0)
            return -1;
    return 0;
}

static int locals_new(struct py_objctx *ctx, uint64_t frame, const uint8_t *code, size_t nargs,
                      struct py_local *out, size_t cap, size_t *count, struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    static _Thread_local struct slot_names names;
    static _Thread_local uint64_t values[PY_LOCALS_MAX];
    uint8_t kinds[PY_LOCALS_MAX];
    if (read_tuple(ctx, get_u64(code, l->code_localsplusnames), &names, err) != 0)
        return -1;
    uint64_t kinds_obj = get_u64(code, l->code_localspluskinds);
    enum py_kind kind;
    uint64_t type;
    int64_t nkinds;
    if (py_object_kind(ctx, kinds_obj, &kind, &type, err) != 0)
        return -1;
    if (kind != PY_KIND_BYTES ||
        reader_u64(ctx->reader, kinds_obj + (uint64_t)l->ob_size, (uint64_t *)&nkinds, err) != 0 ||
        nkinds != (int64_t)names.n)
        return pm_fail(err, PM_ETORN, "inconsistent local kinds in code object");
    size_t n = names.n;
    if (n > 0 && (reader_read(ctx->reader, kinds_obj + (uint64_t)l->bytes_sval, kinds, n, err) != 0 ||
                  reader_read(ctx->reader, frame + (uint64_t)l->iframe_localsplus, values, n * 8,
                              err) != 0))
        return -1;
    uint8_t hidden = l->fast_hidden != PY_OFF_NONE ? (uint8_t)l->fast_hidden : 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t k = kinds[i];
        if ((k & hidden) || !(k & (uint8_t)(l->fast_local | l->fast_cell)))
            continue;
        uint64_t value = k & (uint8_t)l->fast_cell ? through_cell(ctx, values[i]) : values[i];
        if (add_local(ctx, names.items[i], value, i < nargs, out, cap, count, err) != 0)
            return -1;
    }
    return 0;
}

int py_frame_locals(struct py_objctx *ctx, const struct py_frame *f, struct py_local *out,
                    size_t cap, size_t *count, struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    *count = 0;
    if (f == NULL || f->code == NULL || f->addr == 0)
        return pm_fail(err, PM_EINTERNAL, "no frame");
    int64_t fields[] = {l->code_argcount, l->code_kwonlyargcount, l->code_flags,
                        l->code_nlocals, l->code_varnames, l->code_cellvars,
                        l->code_localsplusnames, l->code_localspluskinds};
    size_t header_len = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i] != PY_OFF_NONE && (size_t)fields[i] + 8 > header_len)
            header_len = (size_t)fields[i] + 8;
    uint8_t code[256];
    if (header_len > sizeof code)
        return pm_fail(err, PM_EINTERNAL, "unexpected code object layout");
    if (reader_read(ctx->reader, f->code->addr, code, header_len, err) != 0)
        return -1;
    int32_t argcount = get_i32(code, l->code_argcount);
    int32_t kwonly = get_i32(code, l->code_kwonlyargcount);
    int32_t flags = get_i32(code, l->code_flags);
    if (argcount < 0 || kwonly < 0 || argcount > PY_LOCALS_MAX || kwonly > PY_LOCALS_MAX)
        return pm_fail(err, PM_ETORN, "implausible argument counts in code object");
    size_t nargs = (size_t)argcount + (size_t)kwonly + ((flags & l->flag_varargs) ? 1 : 0) +
                   ((flags & l->flag_varkeywords) ? 1 : 0);
    if (l->code_varnames != PY_OFF_NONE)
        return locals_old(ctx, f->addr, code, nargs, out, cap, count, err);
    return locals_new(ctx, f->addr, code, nargs, out, cap, count, err);
}
