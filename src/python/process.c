/*
 * process.c — the CPython model of one target: attach, threads, GIL, frames,
 * and the code-object cache.
 *
 * Invariants:
 *   - every pointer read from the target is checked by the reader (a bad one
 *     fails the read), every type we can check is checked (frames and code
 *     objects against PyFrame_Type / PyCode_Type), every list walk is bounded
 *     and cycle-checked (Brent's algorithm), so a torn read becomes PM_ETORN
 *     or PM_EREAD, never a garbage frame;
 *   - code objects are cached by address with a fingerprint (the pointers to
 *     their name, file and line table, and first line) re-checked on every
 *     use, so an address reused by another code object is noticed;
 *   - cached strings live until py_begin_sample flushes an oversized cache.
 * Never prints.
 */
#include "process.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../target/core.h"
#include "../target/maps.h"
#include "../target/proc.h"
#include "debug_offsets.h"
#include "linetable.h"
#include "objects.h"

#define CODE_CACHE_MAX 65536u      /* entries before a flush */
#define MAX_INTERPRETERS 256u
#define MAX_THREADS 65536u
#define MAX_FRAME_WALK 200000u     /* frames walked before a stack is torn */
#define LINETABLE_MAX (1u << 20)
#define NAME_MAX_BYTES 1024u
#define FILE_MAX_BYTES 4096u
#define BLOCK_MAX 512u             /* largest header we copy at once */
#define CHUNK_COPY_MAX (1u << 20)  /* largest frame chunk copied in one read */
#define LIST_FAST_MAX 24u          /* threads the list's batched re-read covers */
#define SNAP_FRAMES_MAX 128u       /* <=3.10: frame objects predicted per thread */
#define SNAP_BYTES_MAX (512u << 10) /* bytes one sample copies on speculation */
#define CHUNK_SLACK 1024u          /* copied past the last top: room to grow */
#define FULL_CHECK_EVERY 64u       /* samples between full re-reads of the list */
#define CODE_RECHECK_NS 100000000ull /* a cached code object's header is re-read
                                        when it was last checked this long ago */
#define CODE_YOUNG_NS 1000000000ull  /* ... and on every use in its first second */

/* FRAME_OWNED_BY_CSTACK (3.12+): a shim frame of the C stack, not Python's */
#define FRAME_OWNED_BY_CSTACK 3

struct code_entry {
    uint64_t addr;                 /* 0 = empty slot */
    uint64_t checked_ns;           /* when its header last matched (py->now_ns) */
    uint64_t decoded_ns;           /* when it was decoded */
    uint64_t pos_limit;            /* positions a frame of it can have (3.11+ code
                                      units, <=3.10 bytes of co_code); 0 unknown */
    uint64_t fingerprint[4];       /* name, qualname, filename, linetable pointers */
    int firstlineno;
    struct py_code code;
    char *name, *filename;
    uint8_t *linetable;
    size_t linetable_len;
    int64_t last_pos;              /* one-entry memo of pos → line */
    int last_line;
};

struct py_process {
    pid_t pid;                     /* 0 when reading a core file */
    struct core_file *core;        /* borrowed; NULL for a live process */
    struct py_location loc;
    struct py_layout layout;
    struct py_objects objects;
    struct reader *reader;
    size_t tstate_read, frame_read, iframe_read, code_read;
    struct code_entry **codes;     /* open addressing, power-of-two capacity;
                                      entries never move, so frames may point at them */
    size_t codes_cap, codes_used;
    struct py_stats stats;
    /* 3.11+: the used part of the thread's current frame chunk, copied in one
     * read at the start of a walk so the frames we see are one snapshot */
    uint8_t *chunk_copy;
    uint64_t chunk_base;
    uint64_t stack_top;            /* datastack_top read with the chunk's thread */
    size_t chunk_len, chunk_cap;
    /* one walk: each frame's code address and position, and the distinct
     * code objects with their headers (read together after the walk) */
    uint64_t *walk_code;
    int64_t *walk_pos;
    size_t walk_cap;
    uint64_t *uniq_code;
    uint8_t *uniq_header;
    size_t uniq_cap;
    /* the thread list as last read (one interpreter only), to re-read it
     * in one batched read that checks every link it relies on */
    int list_valid;
    uint64_t list_interp, list_gil;
    size_t list_n;
    uint64_t list_tstate[LIST_FAST_MAX], list_cframe[LIST_FAST_MAX];
    pid_t list_tid[LIST_FAST_MAX];       /* <=3.10: OS tid of list_tid_of[i] */
    uint64_t list_tid_of[LIST_FAST_MAX];
    /* one per listed thread: what its last walk touched, read again on
     * speculation in the list's batched read (see list_threads_fast) */
    struct thread_snap {
        uint64_t pred_tstate;            /* whose prediction (0: none) */
        uint64_t pred_chunk, pred_end;   /* 3.11+: copy [pred_chunk, pred_end) */
        uint64_t pred_frames[SNAP_FRAMES_MAX];   /* <=3.10: walk order */
        size_t pred_n;
        /* this sample */
        int valid;                       /* read in this sample's batch */
        uint8_t *copy;                   /* 3.11+: chunk bytes from copy_base */
        size_t copy_cap, copy_len;
        uint64_t copy_base;
        uint8_t *blocks;                 /* <=3.10: pred_n frame blocks */
        size_t blocks_cap, blocks_n;
        int32_t depth_after;             /* <=3.10: recursion_depth after the copy */
    } snaps[LIST_FAST_MAX];
    size_t since_full;                   /* samples since the list was walked in full */
    const struct thread_snap *walk_snap; /* the walk in progress reads from it */
    size_t walk_cursor;                  /* next predicted frame (<=3.10) */
    const uint8_t *chunk_view;           /* the copy frame_step reads 3.11+ frames from */
    int walk_missed;                     /* the walk read frames outside the batch */
    int32_t walk_depth_after;            /* <=3.10: recursion_depth read after the copy */
    /* <=3.10: the last walk, when it was one frame longer than the
     * recursion depth allows (bound + 1 frames); the next walk believes
     * that only if it finds the same (see py_thread_stack) */
    struct over_by_one {
        uint64_t tstate, top;
        int32_t bound;
    } over_by_one;
    uint64_t outside[SNAP_FRAMES_MAX];   /* frames the walk found outside a chunk copy */
    size_t outside_n;
    uint64_t now_ns;                     /* CLOCK_MONOTONIC_COARSE at py_begin_sample */
    uint64_t next_code_serial;
};

static void snaps_invalidate(struct py_process *py);

/* ---- attach ------------------------------------------------------------ */

static size_t max_field_end(const int64_t *offsets, size_t n, size_t width)
{
    size_t end = 0;
    for (size_t i = 0; i < n; i++)
        if (offsets[i] != PY_OFF_NONE && (size_t)offsets[i] + width > end)
            end = (size_t)offsets[i] + width;
    return end;
}

/* 2.7 and 3.6 have no _PyRuntime: without .symtab there is no way to the
 * static interpreter list head. */
static int check_old_statics(const struct py_process *py, struct pm_error *err)
{
    const struct py_location *loc = &py->loc;
    if (py->layout.runtime_interpreters_head != PY_OFF_NONE || loc->interp_head != 0)
        return 0;
    if (!loc->has_symtab)
        return pm_fail(err, PM_EUNSUPPORTED,
                       "Python %s is not supported in %s: the binary is stripped (no .symtab), "
                       "and Python %d.%d's interpreter list (the static interp_head) is only "
                       "named there",
                       loc->version.text, loc->binary, loc->version.major, loc->version.minor);
    return pm_fail(err, PM_EUNSUPPORTED,
                   "Python %s is not supported in %s: its .symtab has no interp_head symbol",
                   loc->version.text, loc->binary);
}

static int choose_layout(struct py_process *py, struct pm_error *err)
{
    const struct py_version *v = &py->loc.version;
    if ((v->major == 3 && v->minor >= 6 && v->minor <= 12) ||
        (v->major == 2 && v->minor == 7)) {
        const struct py_layout *l = py_layout_for(v->major, v->minor);
        if (l == NULL)
            return pm_fail(err, PM_EUNSUPPORTED, "Python %s is not supported: no layout table",
                           v->text);
        py->layout = *l;
        return check_old_statics(py, err);
    }
    if (v->major == 3 && v->minor == 13) {
        uint8_t block[DEBUG_OFFSETS_MAX_SIZE];
        if (py->loc.runtime_addr == 0 ||
            reader_read(py->reader, py->loc.runtime_addr, block, sizeof block, err) != 0)
            return pm_wrap(err, "reading _Py_DebugOffsets of Python %s", v->text);
        uint64_t hex = ((uint64_t)v->major << 24) | ((uint64_t)v->minor << 16);
        if (debug_offsets_parse(block, sizeof block, hex, &py->layout, err) != 0)
            return pm_wrap(err, "Python %s is not supported", v->text);
        return 0;
    }
    return pm_fail(err, PM_EUNSUPPORTED,
                   "Python %s is not supported (pyrometer reads CPython 2.7 and 3.6 to 3.13)",
                   v->text);
}

static void compute_read_sizes(struct py_process *py)
{
    const struct py_layout *l = &py->layout;
    int64_t ts[] = {l->tstate_prev, l->tstate_next, l->tstate_interp, l->tstate_frame, l->tstate_thread_id,
                    l->tstate_native_thread_id, l->tstate_datastack_chunk,
                    l->tstate_datastack_top};
    py->tstate_read = max_field_end(ts, sizeof ts / sizeof ts[0], 8);
    int64_t fr[] = {l->ob_type, l->frame_back, l->frame_code, l->frame_lasti, l->frame_executing};
    py->frame_read = max_field_end(fr, sizeof fr / sizeof fr[0], 8);
    int64_t ifr[] = {l->iframe_previous, l->iframe_code, l->iframe_instr, l->iframe_owner,
                     l->iframe_is_entry};
    py->iframe_read = max_field_end(ifr, sizeof ifr / sizeof ifr[0], 1);
    int64_t co[] = {l->ob_type, l->ob_size, l->code_filename, l->code_name, l->code_qualname,
                    l->code_linetable, l->code_firstlineno};
    py->code_read = max_field_end(co, sizeof co / sizeof co[0], 8);
}

static int sizes_sane(const struct py_process *py)
{
    return py->tstate_read && py->tstate_read <= BLOCK_MAX && py->code_read <= BLOCK_MAX &&
           py->frame_read <= BLOCK_MAX && py->iframe_read <= BLOCK_MAX;
}

/* Everything after the layout is known: object readers and the cache. */
static int finish_open(struct py_process *py, struct pm_error *err)
{
    compute_read_sizes(py);
    if (!sizes_sane(py))
        return pm_fail(err, PM_EUNSUPPORTED, "Python %s: implausible structure sizes",
                       py->loc.version.text);
    py->objects.reader = py->reader;
    py->objects.layout = &py->layout;
    py->objects.unicode_type = py->loc.unicode_type;
    py->objects.bytes_type = py->loc.bytes_type;
    py->objects.string_type = py->loc.string_type;
    py->codes_cap = 1024;
    py->codes = calloc(py->codes_cap, sizeof *py->codes);
    if (py->codes == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    return 0;
}

int py_attach(pid_t pid, struct py_process **out, struct pm_error *err)
{
    if (proc_check_alive(pid, err) != 0)
        return -1;
    struct proc_maps maps;
    if (maps_read(pid, &maps, err) != 0)
        return -1;
    struct py_process *py = calloc(1, sizeof *py);
    if (py == NULL) {
        maps_free(&maps);
        return pm_fail(err, PM_ENOMEM, "out of memory");
    }
    py->pid = pid;
    int rc = py_locate(pid, &maps, &py->loc, err);
    maps_free(&maps);
    if (rc != 0)
        goto fail;
    py->reader = reader_remote_new(pid, err);
    if (py->reader == NULL)
        goto fail;
    /* Permission problems show up on the first read, whatever the version. */
    uint64_t probe, first = py->loc.runtime_addr ? py->loc.runtime_addr : py->loc.interp_head;
    if (first && reader_u64(py->reader, first, &probe, err) != 0)
        goto fail;
    if (choose_layout(py, err) != 0 || finish_open(py, err) != 0)
        goto fail;
    *out = py;
    return 0;
fail:
    py_detach(py);
    return -1;
}

static int core_resolve(void *ctx, const char *path, char *out, size_t cap)
{
    return core_host_path(ctx, path, out, cap);
}

int py_attach_core(struct core_file *core, struct py_process **out, struct pm_error *err)
{
    struct proc_maps maps;
    if (core_maps(core, &maps, err) != 0)
        return -1;
    struct py_files files = {.resolve = core_resolve, .ctx = core};
    snprintf(files.exe, sizeof files.exe, "%s", core_exe(core) ? core_exe(core) : "");
    snprintf(files.what, sizeof files.what, "the core's process %d (%s)", (int)core_pid(core),
             core_command(core));
    struct py_process *py = calloc(1, sizeof *py);
    if (py == NULL) {
        maps_free(&maps);
        return pm_fail(err, PM_ENOMEM, "out of memory");
    }
    py->core = core;   /* pid stays 0: no /proc lookups for a core */
    int rc = py_locate_in(&maps, &files, &py->loc, err);
    maps_free(&maps);
    if (rc != 0 || (py->reader = core_reader(core, err)) == NULL ||
        choose_layout(py, err) != 0 || finish_open(py, err) != 0) {
        py_detach(py);
        return -1;
    }
    *out = py;
    return 0;
}

int py_open_reader(struct reader *reader, const struct py_layout *layout,
                   const struct py_location *loc, struct py_process **out,
                   struct pm_error *err)
{
    struct py_process *py = calloc(1, sizeof *py);
    if (py == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    py->reader = reader;
    py->layout = *layout;
    py->loc = *loc;
    if (finish_open(py, err) != 0) {
        py_detach(py);
        return -1;
    }
    *out = py;
    return 0;
}

static void code_entry_clear(struct code_entry *e)
{
    free(e->name);
    free(e->filename);
    free(e->linetable);
    memset(e, 0, sizeof *e);
}

static void code_cache_flush(struct py_process *py)
{
    for (size_t i = 0; i < py->codes_cap; i++)
        if (py->codes[i]) {
            code_entry_clear(py->codes[i]);
            free(py->codes[i]);
            py->codes[i] = NULL;
        }
    py->codes_used = 0;
    py->stats.code_flushes++;
}

void py_detach(struct py_process *py)
{
    if (py == NULL)
        return;
    if (py->codes) {
        code_cache_flush(py);
        free(py->codes);
    }
    reader_close(py->reader);
    free(py->chunk_copy);
    free(py->walk_code);
    free(py->walk_pos);
    free(py->uniq_code);
    free(py->uniq_header);
    for (size_t i = 0; i < LIST_FAST_MAX; i++) {
        free(py->snaps[i].copy);
        free(py->snaps[i].blocks);
    }
    free(py);
}

pid_t py_pid(const struct py_process *py) { return py->pid; }
const struct py_version *py_get_version(const struct py_process *py) { return &py->loc.version; }
const char *py_binary(const struct py_process *py) { return py->loc.binary; }
struct reader *py_reader(struct py_process *py) { return py->reader; }
const struct py_location *py_get_location(const struct py_process *py) { return &py->loc; }
const struct py_layout *py_get_layout(const struct py_process *py) { return &py->layout; }
struct py_stats py_get_stats(const struct py_process *py) { return py->stats; }

void py_drop_prefetch(struct py_process *py)
{
    snaps_invalidate(py);
}

void py_begin_sample(struct py_process *py)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    py->now_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    snaps_invalidate(py);
    reader_new_epoch(py->reader);
    if (py->codes_used >= CODE_CACHE_MAX)
        code_cache_flush(py);
}

/* ---- small helpers ------------------------------------------------------ */

static uint64_t field_u64(const uint8_t *block, int64_t off)
{
    uint64_t v = 0;
    if (off != PY_OFF_NONE)
        memcpy(&v, block + off, sizeof v);
    return v;
}

static int32_t field_i32(const uint8_t *block, int64_t off)
{
    int32_t v = 0;
    if (off != PY_OFF_NONE)
        memcpy(&v, block + off, sizeof v);
    return v;
}

/* Brent's cycle detection over a pointer chain: call step() with each new
 * address; returns -1 when the chain came back to an earlier element. */
struct cycle_check {
    uint64_t tortoise;
    uint64_t power, steps;
};

static void cycle_init(struct cycle_check *c)
{
    c->tortoise = 0;
    c->power = 1;
    c->steps = 0;
}

static int cycle_step(struct cycle_check *c, uint64_t addr)
{
    if (addr == c->tortoise)
        return -1;
    if (++c->steps == c->power) {
        c->tortoise = addr;
        c->power *= 2;
        c->steps = 0;
    }
    return 0;
}

/* ---- threads ----------------------------------------------------------- */

/* 2.7 and 3.6: the holder is the current thread state when there is one
 * (_PyThreadState_Current is set just after the GIL is taken and cleared
 * just before it is dropped; 2.7's GIL is a bare lock that records no
 * holder, and before threading starts there is no GIL at all).  3.6 also
 * says who took the GIL last: that covers the moment between taking the
 * GIL and setting the current thread state. */
static uint64_t gil_holder_old(struct py_process *py)
{
    const struct py_location *loc = &py->loc;
    uint64_t current = 0, holder = 0;
    int32_t locked = 0;
    if (loc->tstate_current &&
        reader_u64(py->reader, loc->tstate_current, &current, NULL) == 0 && current != 0)
        return current;
    if (loc->gil_locked && loc->gil_last_holder &&
        reader_i32(py->reader, loc->gil_locked, &locked, NULL) == 0 && locked == 1 &&
        reader_u64(py->reader, loc->gil_last_holder, &holder, NULL) == 0)
        return holder;
    return 0;
}

static uint64_t gil_holder(struct py_process *py, uint64_t interp)
{
    const struct py_layout *l = &py->layout;
    uint64_t gil;
    int64_t locked_off, holder_off;
    if (l->runtime_interpreters_head == PY_OFF_NONE)
        return gil_holder_old(py);
    if (l->runtime_gil_last_holder != PY_OFF_NONE) {
        gil = py->loc.runtime_addr;
        locked_off = l->runtime_gil_locked;
        holder_off = l->runtime_gil_last_holder;
    } else if (l->interp_gil_ptr != PY_OFF_NONE) {
        if (reader_u64(py->reader, interp + (uint64_t)l->interp_gil_ptr, &gil, NULL) != 0)
            return 0;
        locked_off = l->gil_locked;
        holder_off = l->gil_last_holder;
    } else {
        return 0;
    }
    int32_t locked;
    uint64_t holder;
    if (locked_off == PY_OFF_NONE || holder_off == PY_OFF_NONE ||
        reader_i32(py->reader, gil + (uint64_t)locked_off, &locked, NULL) != 0 || !locked ||
        reader_u64(py->reader, gil + (uint64_t)holder_off, &holder, NULL) != 0)
        return 0;
    return holder;
}

static int read_top_frame(struct py_process *py, const uint8_t *ts, uint64_t *frame,
                          struct pm_error *err)
{
    const struct py_layout *l = &py->layout;
    uint64_t ptr = field_u64(ts, l->tstate_frame);
    if (l->frames == PY_FRAMES_CFRAME && ptr != 0) {
        if (reader_u64(py->reader, ptr + (uint64_t)l->cframe_current_frame, &ptr, err) != 0)
            return -1;
    }
    *frame = ptr;
    return 0;
}

/* Read the thread state at tstate fresh, and with it (3.11, 3.12) the
 * current frame of its _PyCFrame, then the `nx` extra items, all in one
 * batched read when the cframe is where cframe_guess says (the usual case);
 * otherwise the cframe is read on its own just after.  Fills ts, *top and
 * *cframe. */
static int tstate_batch(struct py_process *py, uint64_t tstate, uint64_t cframe_guess,
                        uint8_t *ts, uint64_t *top, uint64_t *cframe,
                        const struct reader_iov *extra, size_t nx, struct pm_error *err)
{
    const struct py_layout *l = &py->layout;
    struct reader_iov iov[READER_MAX_IOV];
    uint64_t current = 0;
    size_t n = 0;
    if (nx + 2 > READER_MAX_IOV)
        return pm_fail(err, PM_EINTERNAL, "batched read too large");
    iov[n++] = (struct reader_iov){tstate, ts, py->tstate_read};
    int cf = l->frames == PY_FRAMES_CFRAME;
    if (cf && cframe_guess != 0)
        iov[n++] = (struct reader_iov){cframe_guess + (uint64_t)l->cframe_current_frame,
                                       &current, sizeof current};
    for (size_t i = 0; i < nx; i++)
        iov[n++] = extra[i];
    if (reader_readv(py->reader, iov, n, err) != 0)
        return -1;
    uint64_t ptr = field_u64(ts, l->tstate_frame);
    *cframe = 0;
    if (cf && ptr != 0) {
        *cframe = ptr;
        if (ptr != cframe_guess &&
            reader_read_fresh(py->reader, ptr + (uint64_t)l->cframe_current_frame, &current,
                              sizeof current, err) != 0)
            return -1;
        ptr = current;
    }
    *top = ptr;
    return 0;
}

static void read_thread_fields(struct py_process *py, const uint8_t *ts, struct py_thread *t)
{
    t->chunk = field_u64(ts, py->layout.tstate_datastack_chunk);
    t->stack_top = field_u64(ts, py->layout.tstate_datastack_top);
    t->recursion_depth = py->layout.tstate_recursion_depth != PY_OFF_NONE
                             ? field_i32(ts, py->layout.tstate_recursion_depth)
                             : -1;
}

/* The top frame read once more after a batched copy, and (2.7–3.10, where
 * recursion_depth follows `frame` in PyThreadState) the recursion depth
 * with it, in the same remote range. */
struct top_again {
    uint64_t frame;
    int32_t depth;      /* -1: not read */
    int32_t pad;
};

static struct reader_iov top_again_item(const struct py_layout *l, uint64_t addr,
                                        struct top_again *out)
{
    int with_depth = l->frames == PY_FRAMES_OBJECT &&
                     l->tstate_recursion_depth == l->tstate_frame + 8;
    *out = (struct top_again){0, -1, 0};
    return (struct reader_iov){addr, out, with_depth ? 12 : 8, READER_IOV_LATER};
}

/* Where the interpreter list starts (0: not known). */
static uint64_t interp_head_addr(const struct py_process *py)
{
    const struct py_layout *l = &py->layout;
    /* 3.7+: _PyRuntime.interpreters.head; 2.7, 3.6: the static interp_head */
    return l->runtime_interpreters_head != PY_OFF_NONE
               ? py->loc.runtime_addr + (uint64_t)l->runtime_interpreters_head
               : py->loc.interp_head;
}

/* ---- speculation: the thread list and each thread's stack, read as last time */

static void snaps_invalidate(struct py_process *py)
{
    for (size_t i = 0; i < LIST_FAST_MAX; i++)
        py->snaps[i].valid = 0;
}

/* Make room for len bytes in *buf; 0 ok. */
static int ensure_cap(uint8_t **buf, size_t *cap, size_t len)
{
    if (len <= *cap)
        return 0;
    uint8_t *grown = realloc(*buf, len);
    if (grown == NULL)
        return -1;
    *buf = grown;
    *cap = len;
    return 0;
}

static int cmp_u64_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Add thread i's predicted stack memory to a batch: 3.11+ the chunk range
 * its last walk used (plus slack), <=3.10 the frame objects its last walk
 * visited, sorted by address so that neighbours merge into one remote read.
 * *budget counts the bytes still allowed. */
/* Add the first n of a snapshot's predicted frames (blocks into sn->blocks)
 * and the extra item to a batch, sorted by address so that neighbours merge
 * into one remote read; sets sn->blocks_n. */
static void snap_frame_items(struct py_process *py, struct thread_snap *sn, size_t n,
                             struct reader_iov *iov, size_t *k, size_t *budget,
                             const struct reader_iov *extra)
{
    const struct py_layout *l = &py->layout;
    size_t size = l->frames == PY_FRAMES_OBJECT ? py->frame_read : py->iframe_read;
    size_t room = READER_MAX_IOV - *k - (extra != NULL);
    if (n > room)
        n = room;
    if (n * size > *budget || (n && ensure_cap(&sn->blocks, &sn->blocks_cap, n * size) != 0))
        n = 0;
    /* (address, index) pairs; the extra item is index SNAP_FRAMES_MAX */
    uint64_t order[SNAP_FRAMES_MAX + 1][2];
    size_t m = 0;
    for (size_t f = 0; f < n; f++) {
        order[m][0] = sn->pred_frames[f];
        order[m++][1] = f;
    }
    if (extra) {
        order[m][0] = extra->addr;
        order[m++][1] = SNAP_FRAMES_MAX;
    }
    qsort(order, m, sizeof order[0], cmp_u64_pair);
    for (size_t f = 0; f < m; f++)
        iov[(*k)++] = order[f][1] == SNAP_FRAMES_MAX
                          ? *extra
                          : (struct reader_iov){order[f][0], sn->blocks + order[f][1] * size, size};
    sn->blocks_n = n;
    *budget -= n * size;
}

static void snap_items(struct py_process *py, size_t i, struct reader_iov *iov, size_t *k,
                       size_t *budget, const struct reader_iov *extra)
{
    const struct py_layout *l = &py->layout;
    struct thread_snap *sn = &py->snaps[i];
    sn->copy_len = 0;
    sn->copy_base = 0;
    sn->blocks_n = 0;
    int predicted = sn->pred_tstate == py->list_tstate[i];
    if (predicted && l->frames != PY_FRAMES_OBJECT && sn->pred_chunk != 0 &&
        sn->pred_end > sn->pred_chunk && *k < READER_MAX_IOV) {
        size_t want = (size_t)(sn->pred_end - sn->pred_chunk);
        if (want <= CHUNK_COPY_MAX && want <= *budget &&
            ensure_cap(&sn->copy, &sn->copy_cap, want) == 0) {
            iov[(*k)++] = (struct reader_iov){sn->pred_chunk, sn->copy, want};
            sn->copy_base = sn->pred_chunk;
            sn->copy_len = want;
            *budget -= want;
        }
    }
    snap_frame_items(py, sn, predicted ? sn->pred_n : 0, iov, k, budget, extra);
}

/* Whether thread t's snapshot covers its stack: the chunk copied is the one
 * it uses now and reaches its live top. */
static int snap_covers(const struct py_process *py, const struct thread_snap *sn,
                       const struct py_thread *t)
{
    if (py->layout.frames == PY_FRAMES_OBJECT)
        return 1;   /* frames not predicted are read during the walk */
    return t->chunk != 0 && sn->copy_len != 0 && sn->copy_base == t->chunk &&
           t->stack_top <= sn->copy_base + sn->copy_len;
}

/* The `previous` (3.11+) or `f_back` (<=3.10) of the frame at addr as this
 * read copied it: from the chunk copy, or from the snapshot's predicted
 * frame blocks; 0 when the copy does not hold that frame. */
static int copied_frame_prev(const struct py_process *py, const uint8_t *chunk, uint64_t base,
                             size_t len, const struct thread_snap *sn, uint64_t addr,
                             uint64_t *prev)
{
    const struct py_layout *l = &py->layout;
    int object = l->frames == PY_FRAMES_OBJECT;
    size_t size = object ? py->frame_read : py->iframe_read;
    int64_t off = object ? l->frame_back : l->iframe_previous;
    if (addr == 0 || off == PY_OFF_NONE)
        return 0;
    if (!object && chunk && addr >= base && len >= size && addr - base <= len - size) {
        memcpy(prev, chunk + (addr - base) + off, 8);
        return 1;
    }
    if (sn)
        for (size_t f = 0; f < sn->blocks_n; f++)
            if (sn->pred_frames[f] == addr) {
                memcpy(prev, sn->blocks + f * size + off, 8);
                return 1;
            }
    return 0;
}

/* The top frame to walk from when the thread's top frame was `top` before
 * the copy and `again` after it: the same, or one call deeper (the copy
 * then shows `top` at its call), or one return up (it shows `again` just
 * after it) — each a stack that existed while we read; 0 when the thread
 * moved further (the walk is then started afresh). */
static uint64_t settled_top(const struct py_process *py, const uint8_t *chunk, uint64_t base,
                            size_t len, const struct thread_snap *sn, uint64_t top,
                            uint64_t again)
{
    uint64_t prev;
    if (again == top)
        return top;
    if (copied_frame_prev(py, chunk, base, len, sn, again, &prev) && prev == top && top != 0)
        return top;
    if (copied_frame_prev(py, chunk, base, len, sn, top, &prev) && prev == again && again != 0)
        return again;
    return 0;
}

/* The thread list read the way the last one was found, with every thread's
 * stack memory, in one batched read: the GIL's state, every thread state
 * and (3.11, 3.12) every cframe's current frame at the addresses the last
 * list had, and what each thread's last walk touched (snap_items).  The
 * links the list relies on are then checked against what was just read:
 * the first thread's `prev` is NULL (CPython inserts new threads at the
 * head, so a new thread shows there), each `next` and `prev` is as before,
 * and every FULL_CHECK_EVERY samples (always without `prev`, 2.7) the
 * interpreter list head, the interpreter's thread list head and its `next`
 * too.  A thread whose cframe or chunk moved is read again in a second
 * batched read.  Returns 1 when the list itself changed (the caller walks
 * it), 0 when the threads are in out, -1 on an error. */
static int list_threads_fast(struct py_process *py, struct py_thread *out, size_t cap,
                             size_t *count)
{
    const struct py_layout *l = &py->layout;
    const struct py_location *loc = &py->loc;
    if (!py->list_valid || py->list_n > cap || py->pid == 0)
        return 1;
    size_t n = py->list_n;
    int full = l->tstate_prev == PY_OFF_NONE || ++py->since_full >= FULL_CHECK_EVERY;
    struct reader_iov iov[READER_MAX_IOV];
    size_t k = 0;
    uint64_t interp = 0, head_ts = 0, next_interp = 0, gil_ptr = 0, holder = 0, current = 0;
    int32_t locked = 0;
    uint8_t ts[LIST_FAST_MAX][BLOCK_MAX];
    uint64_t top[LIST_FAST_MAX];
    uint64_t in = py->list_interp;
    if (full) {
        iov[k++] = (struct reader_iov){interp_head_addr(py), &interp, 8};
        iov[k++] = (struct reader_iov){in + (uint64_t)l->interp_threads_head, &head_ts, 8};
        iov[k++] = (struct reader_iov){in + (uint64_t)l->interp_next, &next_interp, 8};
    }
    int old_gil = l->runtime_interpreters_head == PY_OFF_NONE;
    uint64_t gil = 0;
    int64_t locked_off = PY_OFF_NONE, holder_off = PY_OFF_NONE;
    if (old_gil) {
        if (loc->tstate_current)
            iov[k++] = (struct reader_iov){loc->tstate_current, &current, 8};
        if (loc->gil_locked && loc->gil_last_holder) {
            iov[k++] = (struct reader_iov){loc->gil_locked, &locked, 4};
            iov[k++] = (struct reader_iov){loc->gil_last_holder, &holder, 8};
        }
    } else {
        if (l->runtime_gil_last_holder != PY_OFF_NONE) {
            gil = loc->runtime_addr;
            locked_off = l->runtime_gil_locked;
            holder_off = l->runtime_gil_last_holder;
        } else if (l->interp_gil_ptr != PY_OFF_NONE) {
            if (full)
                iov[k++] = (struct reader_iov){in + (uint64_t)l->interp_gil_ptr, &gil_ptr, 8};
            gil = py->list_gil;
            locked_off = l->gil_locked;
            holder_off = l->gil_last_holder;
        }
        if (gil != 0 && locked_off != PY_OFF_NONE && holder_off != PY_OFF_NONE) {
            /* in field order, so that the two merge into one remote read */
            if (holder_off < locked_off)
                iov[k++] = (struct reader_iov){gil + (uint64_t)holder_off, &holder, 8};
            iov[k++] = (struct reader_iov){gil + (uint64_t)locked_off, &locked, 4};
            if (holder_off >= locked_off)
                iov[k++] = (struct reader_iov){gil + (uint64_t)holder_off, &holder, 8};
        }
    }
    /* each thread's state, then its stack memory, so that the copy is no
     * older than the state; the cframe (3.11, 3.12: on the C stack, like
     * the shim frames) goes with the predicted frames, sorted by address */
    size_t budget = SNAP_BYTES_MAX;
    struct top_again top_again[LIST_FAST_MAX];
    for (size_t i = 0; i < n; i++) {
        iov[k++] = (struct reader_iov){py->list_tstate[i], ts[i], py->tstate_read};
        top[i] = 0;
        top_again[i] = (struct top_again){0, -1, 0};
        struct reader_iov cframe = {0};
        if (l->frames == PY_FRAMES_CFRAME && py->list_cframe[i] != 0)
            cframe = (struct reader_iov){py->list_cframe[i] + (uint64_t)l->cframe_current_frame,
                                         &top[i], 8};
        snap_items(py, i, iov, &k, &budget, cframe.addr ? &cframe : NULL);
        /* the top frame once more, after the copy: a thread that called or
         * returned meanwhile is walked afresh (py_thread_stack) */
        if (k < READER_MAX_IOV)
            iov[k++] = top_again_item(l,
                                      cframe.addr ? cframe.addr
                                                  : py->list_tstate[i] + (uint64_t)l->tstate_frame,
                                      &top_again[i]);
        else
            py->snaps[i].pred_tstate = 0;   /* no room to check: not speculated */
    }
    snaps_invalidate(py);
    if (reader_readv(py->reader, iov, k, NULL) != 0)
        return 1;
    /* every link as predicted */
    if (full) {
        if (interp != in || next_interp != 0 || head_ts != (n ? py->list_tstate[0] : 0))
            return 1;
        if (!old_gil && l->runtime_gil_last_holder == PY_OFF_NONE &&
            l->interp_gil_ptr != PY_OFF_NONE && gil_ptr != py->list_gil)
            return 1;
        py->since_full = 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t next = field_u64(ts[i], l->tstate_next);
        if (next != (i + 1 < n ? py->list_tstate[i + 1] : 0))
            return 1;
        if (l->tstate_prev != PY_OFF_NONE &&
            field_u64(ts[i], l->tstate_prev) != (i > 0 ? py->list_tstate[i - 1] : 0))
            return 1;
        if (l->tstate_interp != PY_OFF_NONE && field_u64(ts[i], l->tstate_interp) != in)
            return 1;
    }
    uint64_t gil_holder_ts = 0;
    if (old_gil)
        gil_holder_ts = current != 0 ? current : locked == 1 ? holder : 0;
    else if (gil != 0 && locked_off != PY_OFF_NONE && holder_off != PY_OFF_NONE && locked)
        gil_holder_ts = holder;
    /* threads whose cframe or chunk moved since their last walk: a second
     * batched read for those */
    struct reader_iov again[READER_MAX_IOV];
    size_t ka = 0;
    uint64_t new_top[LIST_FAST_MAX];
    for (size_t i = 0; i < n; i++) {
        struct py_thread *t = &out[i];
        struct thread_snap *sn = &py->snaps[i];
        t->tstate = py->list_tstate[i];
        t->interp = in;
        t->thread_id = field_u64(ts[i], l->tstate_thread_id);
        if (l->tstate_native_thread_id != PY_OFF_NONE) {
            t->os_tid = (pid_t)field_u64(ts[i], l->tstate_native_thread_id);
        } else {
            /* <=3.10: from glibc's struct pthread in the target, which is
             * worth a read only when the thread is new to this place in
             * the list, and on each full check (a pthread_t is reused) */
            if (full || py->list_tid[i] == 0 || py->list_tid_of[i] != t->thread_id) {
                py->list_tid[i] = proc_tid_of_pthread(py->reader, py->pid, t->thread_id);
                py->list_tid_of[i] = t->thread_id;
            }
            t->os_tid = py->list_tid[i];
        }
        t->owns_gil = gil_holder_ts != 0 && gil_holder_ts == t->tstate;
        read_thread_fields(py, ts[i], t);
        if (l->frames == PY_FRAMES_CFRAME) {
            t->cframe = field_u64(ts[i], l->tstate_frame);
            t->top_frame = t->cframe == py->list_cframe[i] ? top[i] : 0;
            if (t->cframe != py->list_cframe[i] && t->cframe != 0 && ka < READER_MAX_IOV)
                again[ka++] = (struct reader_iov){t->cframe + (uint64_t)l->cframe_current_frame,
                                                  &new_top[i], 8};
        } else {
            t->cframe = 0;
            t->top_frame = field_u64(ts[i], l->tstate_frame);
        }
        /* valid only if the top frame did not move while the batch was read
         * (and, 3.11/3.12, the thread is still in the C-level call whose
         * cframe we read: otherwise its top frame is read just below, after
         * the copy, and the walk starts afresh) */
        uint64_t first = l->frames == PY_FRAMES_CFRAME ? top[i] : field_u64(ts[i], l->tstate_frame);
        uint64_t settled = settled_top(py, sn->copy_len ? sn->copy : NULL, sn->copy_base,
                                       sn->copy_len, sn, first, top_again[i].frame);
        sn->depth_after = top_again[i].depth;
        sn->valid = (settled != 0 || (first == 0 && top_again[i].frame == 0)) &&
                    (l->frames != PY_FRAMES_CFRAME || t->cframe == py->list_cframe[i]);
        if (sn->valid && settled != first) {
            if (l->frames == PY_FRAMES_CFRAME)
                top[i] = settled;
            t->top_frame = settled;
        }
        if (sn->valid && !snap_covers(py, sn, t)) {
            sn->copy_len = 0;
            sn->copy_base = 0;
            uint64_t chunk = t->chunk, end = t->stack_top;
            if (chunk != 0 && l->chunk_data != PY_OFF_NONE &&
                end > chunk + (uint64_t)l->chunk_data && end - chunk <= CHUNK_COPY_MAX &&
                ka < READER_MAX_IOV && ensure_cap(&sn->copy, &sn->copy_cap, end - chunk) == 0) {
                again[ka++] = (struct reader_iov){chunk, sn->copy, (size_t)(end - chunk)};
                sn->copy_base = chunk;
                sn->copy_len = (size_t)(end - chunk);
            }
        }
    }
    if (ka > 0 && reader_readv(py->reader, again, ka, NULL) != 0) {
        snaps_invalidate(py);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        struct py_thread *t = &out[i];
        if (l->frames == PY_FRAMES_CFRAME && t->cframe != py->list_cframe[i]) {
            t->top_frame = t->cframe != 0 ? new_top[i] : 0;
            py->list_cframe[i] = t->cframe;
        }
    }
    *count = n;
    return 0;
}

/* Remember a list just walked for list_threads_fast; predictions of
 * threads that are still at the same place in the list are kept. */
static void list_remember(struct py_process *py, const struct py_thread *out, size_t count,
                          size_t cap, int one_interp)
{
    const struct py_layout *l = &py->layout;
    py->list_valid = 0;
    py->since_full = 0;
    snaps_invalidate(py);
    if (!one_interp || count == 0 || count > cap || count > LIST_FAST_MAX || py->pid == 0)
        return;
    py->list_interp = out[0].interp;
    py->list_gil = 0;
    if (l->runtime_interpreters_head != PY_OFF_NONE && l->runtime_gil_last_holder == PY_OFF_NONE &&
        l->interp_gil_ptr != PY_OFF_NONE &&
        reader_u64(py->reader, py->list_interp + (uint64_t)l->interp_gil_ptr, &py->list_gil,
                   NULL) != 0)
        return;
    for (size_t i = 0; i < count; i++) {
        py->list_tstate[i] = out[i].tstate;
        py->list_cframe[i] = out[i].cframe;
        py->list_tid[i] = out[i].os_tid;
        py->list_tid_of[i] = out[i].thread_id;
        if (py->snaps[i].pred_tstate != out[i].tstate) {
            py->snaps[i].pred_tstate = 0;
            py->snaps[i].pred_n = 0;
            py->snaps[i].pred_chunk = 0;
        }
    }
    py->list_n = count;
    py->list_valid = 1;
}

static int list_threads_slow(struct py_process *py, struct py_thread *out, size_t cap,
                             size_t *count, int *one_interp, struct pm_error *err);

int py_list_threads(struct py_process *py, struct py_thread *out, size_t cap, size_t *count,
                    struct pm_error *err)
{
    *count = 0;
    if (list_threads_fast(py, out, cap, count) == 0)
        return 0;
    int one_interp = 0;
    py->list_valid = 0;
    if (list_threads_slow(py, out, cap, count, &one_interp, err) != 0)
        return -1;
    list_remember(py, out, *count, cap, one_interp);
    return 0;
}

static int list_threads_slow(struct py_process *py, struct py_thread *out, size_t cap,
                             size_t *count, int *one_interp, struct pm_error *err)
{
    const struct py_layout *l = &py->layout;
    *count = 0;
    *one_interp = 0;
    uint64_t interp;
    /* 3.7+: _PyRuntime.interpreters.head; 2.7, 3.6: the static interp_head */
    uint64_t head = l->runtime_interpreters_head != PY_OFF_NONE
                        ? py->loc.runtime_addr + (uint64_t)l->runtime_interpreters_head
                        : py->loc.interp_head;
    if (head == 0)
        return pm_fail(err, PM_EUNSUPPORTED, "Python %s: the interpreter list is not known",
                       py->loc.version.text);
    if (reader_u64(py->reader, head, &interp, err) != 0)
        return -1;
    struct cycle_check interp_cycle;
    cycle_init(&interp_cycle);
    for (size_t ni = 0; interp != 0; ni++) {
        if (ni >= MAX_INTERPRETERS || cycle_step(&interp_cycle, interp) != 0)
            return pm_fail(err, PM_ETORN, "interpreter list is inconsistent");
        uint64_t tstate, next_interp;
        if (reader_u64(py->reader, interp + (uint64_t)l->interp_threads_head, &tstate, err) != 0 ||
            reader_u64(py->reader, interp + (uint64_t)l->interp_next, &next_interp, err) != 0)
            return -1;
        uint64_t holder = gil_holder(py, interp);
        struct cycle_check thread_cycle;
        cycle_init(&thread_cycle);
        for (size_t nt = 0; tstate != 0; nt++) {
            if (nt >= MAX_THREADS || cycle_step(&thread_cycle, tstate) != 0)
                return pm_fail(err, PM_ETORN, "thread list is inconsistent");
            uint8_t ts[BLOCK_MAX];
            if (reader_read(py->reader, tstate, ts, py->tstate_read, err) != 0)
                return -1;
            if (*count < cap) {
                struct py_thread *t = &out[*count];
                t->tstate = tstate;
                t->interp = interp;
                t->thread_id = field_u64(ts, l->tstate_thread_id);
                t->os_tid = l->tstate_native_thread_id != PY_OFF_NONE
                                ? (pid_t)field_u64(ts, l->tstate_native_thread_id)
                            : py->core ? core_tid_of_pthread(py->core, t->thread_id)
                            : py->pid ? proc_tid_of_pthread(py->reader, py->pid, t->thread_id)
                                      : 0;
                t->owns_gil = holder != 0 && holder == tstate;
                read_thread_fields(py, ts, t);
                if (read_top_frame(py, ts, &t->top_frame, err) != 0)
                    return -1;
                t->cframe = l->frames == PY_FRAMES_CFRAME ? field_u64(ts, l->tstate_frame) : 0;
            }
            (*count)++;
            tstate = field_u64(ts, l->tstate_next);
        }
        *one_interp = ni == 0 && next_interp == 0;
        interp = next_interp;
    }
    return 0;
}

/* ---- code objects ------------------------------------------------------ */

static size_t code_slot(uint64_t addr, size_t cap)
{
    uint64_t h = addr * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

static int code_cache_grow(struct py_process *py)
{
    size_t new_cap = py->codes_cap * 2;
    struct code_entry **grown = calloc(new_cap, sizeof *grown);
    if (grown == NULL)
        return -1;
    for (size_t i = 0; i < py->codes_cap; i++) {
        if (py->codes[i] == NULL)
            continue;
        size_t s = code_slot(py->codes[i]->addr, new_cap);
        while (grown[s])
            s = (s + 1) & (new_cap - 1);
        grown[s] = py->codes[i];
    }
    free(py->codes);
    py->codes = grown;
    py->codes_cap = new_cap;
    return 0;
}

static char *read_str_dup(struct py_process *py, uint64_t addr, size_t max,
                          struct pm_error *err)
{
    char buf[FILE_MAX_BYTES];
    if (max > sizeof buf)
        max = sizeof buf;
    if (py_read_str(&py->objects, addr, buf, max, err) != 0)
        return NULL;
    char *s = strdup(buf);
    if (s == NULL)
        pm_fail(err, PM_ENOMEM, "out of memory");
    return s;
}

static int code_decode(struct py_process *py, uint64_t addr, const uint8_t *header,
                       struct code_entry *e, struct pm_error *err)
{
    const struct py_layout *l = &py->layout;
    uint64_t name_ptr = l->code_qualname != PY_OFF_NONE ? field_u64(header, l->code_qualname)
                                                        : field_u64(header, l->code_name);
    e->name = read_str_dup(py, name_ptr, NAME_MAX_BYTES, err);
    if (e->name == NULL)
        return -1;
    e->filename = read_str_dup(py, field_u64(header, l->code_filename), FILE_MAX_BYTES, err);
    if (e->filename == NULL)
        return -1;
    if (py_read_bytes(&py->objects, field_u64(header, l->code_linetable), LINETABLE_MAX,
                      &e->linetable, &e->linetable_len, err) != 0)
        return -1;
    e->addr = addr;
    e->firstlineno = field_i32(header, l->code_firstlineno);
    e->fingerprint[0] = field_u64(header, l->code_name);
    e->fingerprint[1] = field_u64(header, l->code_qualname);
    e->fingerprint[2] = field_u64(header, l->code_filename);
    e->fingerprint[3] = field_u64(header, l->code_linetable);
    e->code.addr = addr;
    e->code.name = e->name;
    e->code.filename = e->filename;
    e->code.firstlineno = e->firstlineno;
    e->code.serial = ++py->next_code_serial;
    e->pos_limit = 0;
    if (l->code_adaptive != PY_OFF_NONE) {
        e->pos_limit = field_u64(header, l->ob_size);
    } else if (l->code_code != PY_OFF_NONE && l->ob_size != PY_OFF_NONE) {
        uint64_t code_bytes = field_u64(header, l->code_code), size = 0;
        if (code_bytes != 0 &&
            reader_u64(py->reader, code_bytes + (uint64_t)l->ob_size, &size, NULL) == 0 &&
            size <= LINETABLE_MAX * 16)
            e->pos_limit = size;
    }
    e->checked_ns = py->now_ns;
    e->decoded_ns = py->now_ns;
    e->last_pos = INT64_MIN;
    return 0;
}

/* The cache entry for the code object at addr, whose header was just read
 * (re-validated against the header, or decoded afresh). */
static struct code_entry *code_from_header(struct py_process *py, uint64_t addr,
                                           const uint8_t *header, struct pm_error *err)
{
    const struct py_layout *l = &py->layout;
    if (py->loc.code_type && field_u64(header, l->ob_type) != py->loc.code_type) {
        pm_fail(err, PM_ETORN, "frame points to a non-code object at 0x%llx",
                (unsigned long long)addr);
        return NULL;
    }
    size_t s = code_slot(addr, py->codes_cap);
    while (py->codes[s] && py->codes[s]->addr != addr)
        s = (s + 1) & (py->codes_cap - 1);
    struct code_entry *e = py->codes[s];
    if (e != NULL) {
        if (e->fingerprint[0] == field_u64(header, l->code_name) &&
            e->fingerprint[1] == field_u64(header, l->code_qualname) &&
            e->fingerprint[2] == field_u64(header, l->code_filename) &&
            e->fingerprint[3] == field_u64(header, l->code_linetable) &&
            e->firstlineno == field_i32(header, l->code_firstlineno)) {
            py->stats.code_hits++;
            e->checked_ns = py->now_ns;
            return e;
        }
        /* Same address, another code object: decode it afresh in place. */
        struct code_entry fresh = {0};
        if (code_decode(py, addr, header, &fresh, err) != 0) {
            code_entry_clear(&fresh);
            return NULL;
        }
        code_entry_clear(e);
        *e = fresh;
        py->stats.code_misses++;
        return e;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL || code_decode(py, addr, header, e, err) != 0) {
        if (e == NULL)
            pm_fail(err, PM_ENOMEM, "out of memory");
        else
            code_entry_clear(e);
        free(e);
        return NULL;
    }
    py->stats.code_misses++;
    if ((py->codes_used + 1) * 2 > py->codes_cap) {
        if (code_cache_grow(py) != 0) {
            code_entry_clear(e);
            free(e);
            pm_fail(err, PM_ENOMEM, "out of memory");
            return NULL;
        }
        s = code_slot(addr, py->codes_cap);
        while (py->codes[s])
            s = (s + 1) & (py->codes_cap - 1);
    }
    py->codes[s] = e;
    py->codes_used++;
    return e;
}

static int code_line(struct py_process *py, struct code_entry *e, int64_t pos)
{
    if (pos == e->last_pos)
        return e->last_line;
    int line = linetable_line(py->layout.lines, e->linetable, e->linetable_len,
                              e->firstlineno, pos);
    e->last_pos = pos;
    e->last_line = line;
    return line;
}

/* ---- frames ------------------------------------------------------------ */

/* A frame not in a copied chunk (<=3.10 every frame object; 3.11+ a
 * generator's frame or 3.12+ a shim frame on the C stack): its block from
 * this sample's batch, when the thread's last walk predicted it (looked for
 * a few places after the last hit: a stack that grew or shrank at the top
 * shifts them).  Every such address is noted for the next prediction. */
static int predicted_block(struct py_process *py, uint64_t addr, uint8_t *block, size_t size)
{
    if (py->outside_n < SNAP_FRAMES_MAX)
        py->outside[py->outside_n++] = addr;
    const struct thread_snap *sn = py->walk_snap;
    if (sn == NULL)
        return 0;
    for (size_t f = py->walk_cursor; f < sn->blocks_n && f < py->walk_cursor + 8; f++)
        if (sn->pred_frames[f] == addr) {
            memcpy(block, sn->blocks + f * size, size);
            py->walk_cursor = f + 1;
            return 1;
        }
    return 0;
}

/* One step of the walk: the code address, bytecode position and next frame
 * of the frame at addr (top: the thread's innermost); *skip when the frame
 * is not a Python frame. */
static int frame_step(struct py_process *py, uint64_t addr, int top, uint64_t *code, int64_t *pos,
                      int *has_pos, uint64_t *next, int *skip, int *entry,
                      struct pm_error *err)
{
    const struct py_layout *l = &py->layout;
    uint8_t block[BLOCK_MAX];
    *skip = 0;
    *has_pos = 1;
    *entry = 1;
    if (l->frames == PY_FRAMES_OBJECT) {
        if (!predicted_block(py, addr, block, py->frame_read)) {
            py->walk_missed = 1;
            if (reader_read(py->reader, addr, block, py->frame_read, err) != 0)
                return -1;
        }
        if (py->loc.frame_type && field_u64(block, l->ob_type) != py->loc.frame_type)
            return pm_fail(err, PM_ETORN, "not a frame object at 0x%llx",
                           (unsigned long long)addr);
        /* ob_refcnt (the first word): a frame that returned while we walked
         * is on a free list with no references, and its f_back leads
         * anywhere */
        if (field_u64(block, 0) == 0)
            return pm_fail(err, PM_ETORN, "frame at 0x%llx was freed while being read",
                           (unsigned long long)addr);
        *code = field_u64(block, l->frame_code);
        *next = field_u64(block, l->frame_back);
        /* The bottom frame of a chain below its top is in a call, so its
         * eval runs (3.6–3.9 f_executing 1, 3.10 f_state FRAME_EXECUTING,
         * 0).  One that does not ended the walk early: a frame taken again
         * from the free list keeps the list's link as its f_back until its
         * new call sets it, NULL at the list's end, and the rest of the
         * stack would be lost.  (Any frame below the top would do but for
         * Python-level trace functions, called on a frame before its eval
         * sets the flag.)  The top frame alone may be about to start (its
         * flag is set after the call trace: 3.10 FRAME_CREATED, -2; 3.6–3.9
         * f_lasti still -1), but one that ran and stopped is a frame the
         * thread state named before it returned, already taken again for a
         * new call that has not set its f_back yet (CI saw a lone `rec`
         * frame of rec20.py on 3.6). */
        if (*next == 0 && l->frame_executing != PY_OFF_NONE) {
            int8_t state = (int8_t)block[l->frame_executing];
            int running = state == (l->minor >= 10 ? 0 : 1);
            int starting = top && (l->minor >= 10 ? state == -2
                                                  : field_i32(block, l->frame_lasti) < 0);
            if (!running && !starting)
                return pm_fail(err, PM_ETORN, "frame at 0x%llx ends the chain but does not run",
                               (unsigned long long)addr);
        }
        int32_t lasti = field_i32(block, l->frame_lasti);
        /* 3.10 counts f_lasti in code units; the 3.10 line table in bytes */
        *pos = l->lines == PY_LINES_LINETABLE310 && lasti >= 0 ? (int64_t)lasti * 2 : lasti;
        return 0;
    }
    if (py->chunk_view && addr >= py->chunk_base && py->chunk_len >= py->iframe_read &&
        addr - py->chunk_base <= py->chunk_len - py->iframe_read) {
        /* frames at or above the live top of the data stack have returned */
        if (py->stack_top != 0 && addr >= py->stack_top)
            return pm_fail(err, PM_ETORN, "frame at 0x%llx is above the top of the stack",
                           (unsigned long long)addr);
        memcpy(block, py->chunk_view + (addr - py->chunk_base), py->iframe_read);
    } else if (!predicted_block(py, addr, block, py->iframe_read)) {
        py->walk_missed = 1;
        if (reader_read(py->reader, addr, block, py->iframe_read, err) != 0)
            return -1;
    }
    *code = field_u64(block, l->iframe_code);
    *next = field_u64(block, l->iframe_previous);
    if (l->iframe_owner != PY_OFF_NONE && py->layout.minor >= 12 &&
        block[l->iframe_owner] == FRAME_OWNED_BY_CSTACK) {
        *skip = 1;
        return 0;
    }
    /* 3.11 flags entry frames; 3.12+ put a shim frame below them, which the
     * walk marks on the frame before it (see py_thread_stack) */
    *entry = l->iframe_is_entry != PY_OFF_NONE ? block[l->iframe_is_entry] != 0 : 0;
    uint64_t instr = field_u64(block, l->iframe_instr);
    uint64_t start = *code + (uint64_t)l->code_adaptive;
    /* prev_instr may sit one unit before the code (a frame not yet started) */
    if (instr + 2 < start || (instr >= start && instr - start > (uint64_t)INT32_MAX * 2)) {
        /* before the code, or implausibly far past it: no position (in
         * unsigned arithmetic: both come from the target and may be
         * anything) */
        *has_pos = 0;
        *pos = -1;
        return 0;
    }
    *pos = instr < start ? -1 : (int64_t)((instr - start) / 2);
    return 0;
}

/* Re-read t's state from the target itself (not the page cache), with the
 * extra items in the same batched read. */
static int read_thread_fresh_with(struct py_process *py, struct py_thread *t,
                                  const struct reader_iov *extra, size_t nx,
                                  struct pm_error *err)
{
    uint8_t ts[BLOCK_MAX];
    uint64_t top, cframe;
    if (tstate_batch(py, t->tstate, t->cframe, ts, &top, &cframe, extra, nx, err) != 0)
        return -1;
    if (field_u64(ts, py->layout.tstate_thread_id) != t->thread_id)
        return pm_fail(err, PM_ETORN, "thread %llu has gone", (unsigned long long)t->thread_id);
    read_thread_fields(py, ts, t);
    t->top_frame = top;
    t->cframe = cframe;
    return 0;
}

static int read_thread_fresh(struct py_process *py, struct py_thread *t, struct pm_error *err)
{
    return read_thread_fresh_with(py, t, NULL, 0, err);
}

int py_thread_refresh(struct py_process *py, struct py_thread *t, struct pm_error *err)
{
    /* the retried walk must not see pages cached by the torn one, nor the
     * batch's copy */
    snaps_invalidate(py);
    reader_new_epoch(py->reader);
    return read_thread_fresh(py, t, err);
}

/* Copy the used part of thread t's current frame chunk in one read (3.11+),
 * so that a walk sees one snapshot of the frames that live there.  Failing
 * to copy is not an error: frames are then read one by one. */
static void snapshot_chunk(struct py_process *py, const struct py_thread *t)
{
    const struct py_layout *l = &py->layout;
    py->chunk_len = 0;
    py->chunk_base = 0;
    py->stack_top = t->stack_top;
    if (t->chunk == 0 || l->chunk_data == PY_OFF_NONE)
        return;
    uint64_t header[4];
    if (reader_read(py->reader, t->chunk, header, sizeof header, NULL) != 0)
        return;
    uint64_t size = header[l->chunk_size / 8], top = header[l->chunk_top / 8];
    uint64_t used = (uint64_t)l->chunk_data + top * 8;
    /* frames end below `top`; keep one frame header of slack past it */
    uint64_t want = used + py->iframe_read;
    if (size > CHUNK_COPY_MAX || top > size || want > CHUNK_COPY_MAX)
        return;
    if (want > size)
        want = size;
    if (ensure_cap(&py->chunk_copy, &py->chunk_cap, want) != 0)
        return;
    if (reader_read_fresh(py->reader, t->chunk, py->chunk_copy, want, NULL) != 0)
        return;
    py->chunk_base = t->chunk;
    py->chunk_len = want;
    py->chunk_view = py->chunk_copy;
}

static int grow_walk(struct py_process *py, size_t need)
{
    if (need <= py->walk_cap)
        return 0;
    size_t cap = py->walk_cap ? py->walk_cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    uint64_t *code = realloc(py->walk_code, cap * sizeof *code);
    if (code == NULL)
        return -1;
    py->walk_code = code;
    int64_t *pos = realloc(py->walk_pos, cap * sizeof *pos);
    if (pos == NULL)
        return -1;
    py->walk_pos = pos;
    py->walk_cap = cap;
    return 0;
}

static int grow_uniq(struct py_process *py, size_t need)
{
    if (need <= py->uniq_cap)
        return 0;
    size_t cap = py->uniq_cap ? py->uniq_cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    uint64_t *code = realloc(py->uniq_code, cap * sizeof *code);
    if (code == NULL)
        return -1;
    py->uniq_code = code;
    uint8_t *header = realloc(py->uniq_header, cap * py->code_read);
    if (header == NULL)
        return -1;
    py->uniq_header = header;
    py->uniq_cap = cap;
    return 0;
}

/* Before a live walk: the thread's state fresh and, 3.11+, the used part of
 * its current frame chunk (from the chunk to the top of the data stack, as
 * listed) in the same batched read, so that the walk starts from the live
 * top of the stack and sees one snapshot of the frames in the chunk.  A
 * chunk that cannot be copied is not an error: frames are then read one by
 * one. */
static int start_walk(struct py_process *py, struct py_thread *t, struct thread_snap *sn,
                      int *consistent, struct pm_error *err)
{
    const struct py_layout *l = &py->layout;
    uint64_t chunk = t->chunk, top = t->stack_top;
    py->chunk_len = 0;
    py->chunk_base = 0;
    *consistent = 0;
    struct reader_iov extra[READER_MAX_IOV - 2];
    size_t nx = 0, copy_len = 0;
    if (chunk != 0 && l->chunk_data != PY_OFF_NONE && top > chunk + (uint64_t)l->chunk_data &&
        top - chunk <= CHUNK_COPY_MAX) {
        /* a little past the old top, for a stack that grew since */
        size_t want = (size_t)(top - chunk) + CHUNK_SLACK;
        if (ensure_cap(&py->chunk_copy, &py->chunk_cap, want) == 0) {
            extra[nx++] = (struct reader_iov){chunk, py->chunk_copy, want};
            copy_len = want;
        }
    }
    /* the frames outside the chunk its last walk met (generators, shims,
     * every frame object before 3.11) */
    if (sn != NULL && sn->pred_tstate == t->tstate) {
        size_t budget = SNAP_BYTES_MAX;
        size_t room = sizeof extra / sizeof extra[0] - nx - 1;
        snap_frame_items(py, sn, sn->pred_n < room ? sn->pred_n : room, extra, &nx, &budget,
                         NULL);
    }
    /* ... and the top frame once more after the copy: when it did not move,
     * the copy is one moment's stack */
    struct top_again again;
    uint64_t again_addr = l->frames == PY_FRAMES_CFRAME
                              ? (t->cframe ? t->cframe + (uint64_t)l->cframe_current_frame : 0)
                              : t->tstate + (uint64_t)l->tstate_frame;
    if (again_addr != 0 && nx > 0) {
        extra[nx++] = top_again_item(l, again_addr, &again);
        struct py_thread fresh = *t;
        if (read_thread_fresh_with(py, &fresh, extra, nx, NULL) == 0) {
            uint64_t settled = settled_top(py, copy_len ? py->chunk_copy : NULL, chunk, copy_len,
                                           sn && sn->pred_tstate == t->tstate ? sn : NULL,
                                           fresh.top_frame, again.frame);
            *consistent = settled != 0 && fresh.cframe == t->cframe;
            py->walk_depth_after = again.depth;
            if (*consistent)
                fresh.top_frame = settled;
            *t = fresh;
            py->stack_top = t->stack_top;
            /* the copy is of the chunk the thread still uses */
            if (copy_len != 0 && t->chunk == chunk) {
                py->chunk_base = chunk;
                py->chunk_len = copy_len;
                py->chunk_view = py->chunk_copy;
            } else if (copy_len != 0) {
                *consistent = 0;
            }
            return 0;
        }
        if (sn)
            sn->blocks_n = 0;
    }
    if (read_thread_fresh(py, t, err) != 0)
        return -1;
    py->stack_top = t->stack_top;
    return 0;
}

/* The cache entry for the code object at addr if it may be used without
 * reading its header: not decoded within the last CODE_YOUNG_NS (code
 * objects that die, like a module's body after its import, die young, and
 * another may take the address at once), checked within CODE_RECHECK_NS,
 * and the frame's position lies inside its bytecode.  An address reused by
 * another code object is then noticed at once while either is young or when
 * the position does not fit, and within CODE_RECHECK_NS otherwise. */
static struct code_entry *code_trusted(struct py_process *py, uint64_t addr, int64_t pos)
{
    size_t s = code_slot(addr, py->codes_cap);
    while (py->codes[s] && py->codes[s]->addr != addr)
        s = (s + 1) & (py->codes_cap - 1);
    struct code_entry *e = py->codes[s];
    if (e == NULL || py->pid == 0 || py->now_ns - e->checked_ns > CODE_RECHECK_NS ||
        py->now_ns - e->decoded_ns < CODE_YOUNG_NS)
        return NULL;
    if (pos != INT64_MIN && (pos < 0 || e->pos_limit == 0 || (uint64_t)pos >= e->pos_limit))
        return NULL;
    return e;
}

/* After the walk: the headers of the code objects of the walk's frames
 * that the cache cannot vouch for (code_trusted: type-checked and compared
 * with the cache's fingerprints) and, with recheck, the thread's state once
 * more, in one batched read per READER_MAX_IOV - 2 code objects; fails
 * PM_ETORN when the thread's current frame or stack top changed while we
 * read. */
static int finish_walk(struct py_process *py, const struct py_thread *t, size_t n,
                       struct py_frame *frames, int recheck, struct pm_error *err)
{
    size_t nu = 0;
    if (grow_uniq(py, n ? n : 1) != 0)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct code_entry *e = code_trusted(py, py->walk_code[i], py->walk_pos[i]);
        if (e != NULL) {
            frames[i].code = &e->code;
            continue;
        }
        frames[i].code = NULL;
        size_t u = 0;
        while (u < nu && py->uniq_code[u] != py->walk_code[i])
            u++;
        if (u == nu)
            py->uniq_code[nu++] = py->walk_code[i];
    }
    int check = recheck && t->top_frame != 0 && py->pid != 0;
    const size_t group = READER_MAX_IOV - 2;
    size_t done = 0;
    do {
        struct reader_iov iov[READER_MAX_IOV];
        size_t k = 0;
        for (; k < group && done + k < nu; k++)
            iov[k] = (struct reader_iov){py->uniq_code[done + k],
                                         py->uniq_header + (done + k) * py->code_read,
                                         py->code_read};
        int last = done + k >= nu;
        if (last && check) {
            uint8_t ts[BLOCK_MAX];
            uint64_t top, cframe;
            struct py_thread now = *t;
            if (tstate_batch(py, t->tstate, t->cframe, ts, &top, &cframe, iov, k, err) != 0)
                return -1;
            read_thread_fields(py, ts, &now);
            if (top != t->top_frame || now.stack_top != t->stack_top)
                return pm_fail(err, PM_ETORN, "the stack of thread %llu changed while being read",
                               (unsigned long long)t->thread_id);
        } else if (k > 0 && reader_readv(py->reader, iov, k, err) != 0) {
            return -1;
        }
        done += k;
    } while (done < nu);
    for (size_t u = 0; u < nu; u++) {
        struct code_entry *e = code_from_header(py, py->uniq_code[u],
                                                py->uniq_header + u * py->code_read, err);
        if (e == NULL)
            return -1;
        for (size_t i = 0; i < n; i++)
            if (frames[i].code == NULL && py->walk_code[i] == py->uniq_code[u])
                frames[i].code = &e->code;
    }
    for (size_t i = 0; i < n; i++) {
        struct code_entry *e = (struct code_entry *)((char *)frames[i].code -
                                                     offsetof(struct code_entry, code));
        frames[i].line = py->walk_pos[i] != INT64_MIN ? code_line(py, e, py->walk_pos[i])
                                                      : e->firstlineno;
    }
    return 0;
}

/* The snapshot of the listed thread from this sample's batch, if any. */
static struct thread_snap *snap_of(struct py_process *py, const struct py_thread *t)
{
    if (!py->list_valid)
        return NULL;
    for (size_t i = 0; i < py->list_n && i < LIST_FAST_MAX; i++)
        if (py->list_tstate[i] == t->tstate)
            return &py->snaps[i];
    return NULL;
}

/* After a good walk of thread t: what the next sample should read ahead. */
static void snap_predict(struct py_process *py, struct thread_snap *sn, const struct py_thread *t)
{
    const struct py_layout *l = &py->layout;
    sn->pred_tstate = t->tstate;
    memcpy(sn->pred_frames, py->outside, py->outside_n * sizeof py->outside[0]);
    sn->pred_n = py->outside_n;
    sn->pred_chunk = 0;
    if (l->frames == PY_FRAMES_OBJECT || t->chunk == 0 || t->stack_top <= t->chunk)
        return;
    uint64_t end = t->stack_top + CHUNK_SLACK;
    /* never past the chunk's own end (its size is in the header we copied) */
    uint64_t size = 0;
    if (py->chunk_view && py->chunk_base == t->chunk && py->chunk_len >= (size_t)l->chunk_size + 8)
        memcpy(&size, py->chunk_view + l->chunk_size, 8);
    if (size == 0 || size > CHUNK_COPY_MAX)
        end = t->stack_top;
    else if (end > t->chunk + size)
        end = t->chunk + size;
    sn->pred_chunk = t->chunk;
    sn->pred_end = end;
}

int py_thread_stack(struct py_process *py, const struct py_thread *listed, struct py_frame *frames,
                    size_t cap, size_t *depth, struct pm_error *err)
{
    *depth = 0;
    /* A thread read in this sample's batched read (list_threads_fast) is
     * walked over that copy: its state, current frame and stack memory came
     * from one system call.  Any other thread's state is read again just
     * before its frames are copied, and checked once more after the walk
     * (finish_walk), so the walk starts from the live top of the stack and
     * not from a frame that has returned since. */
    struct py_thread current = *listed;
    const struct py_thread *t = &current;
    struct over_by_one seen = py->over_by_one;
    py->over_by_one = (struct over_by_one){0};
    struct thread_snap *sn = py->pid != 0 ? snap_of(py, listed) : NULL;
    int batched = sn != NULL && sn->valid;
    int fresh_consistent = 0;
    py->walk_snap = NULL;
    py->walk_cursor = 0;
    py->walk_missed = 0;
    py->walk_depth_after = -1;
    py->outside_n = 0;
    py->chunk_view = NULL;
    py->chunk_base = 0;
    py->chunk_len = 0;
    if (batched) {
        sn->valid = 0;   /* one walk per read: a retry reads afresh */
        py->stack_top = t->stack_top;
        py->walk_snap = sn;
        py->walk_depth_after = sn->depth_after;
        if (sn->copy_len != 0) {
            py->chunk_view = sn->copy;
            py->chunk_base = sn->copy_base;
            py->chunk_len = sn->copy_len;
        }
    } else if (py->pid != 0) {
        if (start_walk(py, &current, sn, &fresh_consistent, err) != 0)
            return -1;
        py->walk_snap = sn;
    } else {
        snapshot_chunk(py, t);
    }
    if (grow_walk(py, cap ? cap : 1) != 0)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    struct cycle_check cycle;
    cycle_init(&cycle);
    int truncated = 0;
    uint64_t addr = t->top_frame;
    size_t walked = 0;
    for (; addr != 0; walked++) {
        if (walked >= MAX_FRAME_WALK || cycle_step(&cycle, addr) != 0)
            return pm_fail(err, PM_ETORN, "frame chain of thread %llu loops",
                           (unsigned long long)t->thread_id);
        uint64_t code_addr = 0, next = 0, frame_addr = addr;
        int64_t pos = -1;
        int skip = 0, has_pos = 0, entry = 0;
        if (frame_step(py, addr, walked == 0, &code_addr, &pos, &has_pos, &next, &skip, &entry,
                       err) != 0)
            return -1;
        addr = next;
        if (skip) {
            /* 3.12+: a shim frame sits below the entry frame of a C call */
            if (*depth > 0 && *depth <= cap)
                frames[*depth - 1].entry = 1;
            continue;
        }
        if (*depth == cap) {
            truncated = 1;
            continue;
        }
        if (code_addr == 0)
            return pm_fail(err, PM_EREAD, "frame at 0x%llx has no code object",
                           (unsigned long long)frame_addr);
        py->walk_code[*depth] = code_addr;
        py->walk_pos[*depth] = has_pos ? pos : INT64_MIN;
        frames[*depth].code = NULL;
        frames[*depth].line = 0;
        frames[*depth].addr = frame_addr;
        frames[*depth].entry = entry;
        (*depth)++;
    }
    /* 2.7–3.10: frame objects copied in address order while the thread
     * called and returned can join two chains (a frame freed and reused for
     * a new call between the copies of its caller and of itself); no chain
     * that existed is longer than the thread's recursion depth, read before
     * and after the copy, plus one: a returning frame's eval drops the depth
     * just before it pops the frame.  A joined chain can be that one frame
     * longer too (CI saw 21 `rec` frames of rec20.py on 3.7), so a walk one
     * over the depth is believed only when the next walk of the thread, read
     * afresh, finds the same top, depth and length: a thread held in that
     * window does, a torn read does not come out the same twice. */
    if (t->recursion_depth > 0) {
        int32_t bound = t->recursion_depth > py->walk_depth_after ? t->recursion_depth
                                                                   : py->walk_depth_after;
        struct over_by_one now = {t->tstate, t->top_frame, bound};
        int one_over = walked == (size_t)bound + 1;
        int same = seen.tstate == now.tstate && seen.top == now.top && seen.bound == now.bound;
        if (walked > (size_t)bound + 1 || (one_over && !same)) {
            if (one_over)
                py->over_by_one = now;
            return pm_fail(err, PM_ETORN,
                           "the stack of thread %llu changed while being read "
                           "(%zu frames, recursion depth %d)",
                           (unsigned long long)t->thread_id, walked, bound);
        }
    }
    /* frames read one by one after the batch may be newer than the state
     * the walk started from: check that state again */
    int recheck = (!batched && !fresh_consistent) || py->walk_missed;
    py->walk_snap = NULL;
    if (finish_walk(py, t, *depth, frames, recheck, err) != 0)
        return -1;
    if (sn != NULL && !truncated)
        snap_predict(py, sn, t);
    return truncated;
}
