/*
 * heap.c — the heap census: every object on the garbage collector's
 * generation lists, counted and sized by type.
 *
 * How it reads: a GC-tracked object is preceded by a PyGC_Head {next,
 * prev}, and each generation is a circular doubly-linked list of them
 * through its head (struct gc_generation.head).  The target's memory is
 * copied into a local snapshot one block (1 MiB, cut to the mapping) at a
 * time, the first time the walk touches it; the walk and the type lookups
 * then run over the copies.  A read outside every known mapping, or in a
 * block that cannot be copied whole, is read exactly instead.
 *
 * Invariants:
 *   - a walk takes at most max_objects steps, runs Brent's cycle check, and
 *     checks at every node that its prev link names the node we came from
 *     (3.8+ keeps two flag bits under prev: masked off); a mismatch is
 *     re-read fresh from the target: when the previous node now links
 *     elsewhere, the walk follows the new link (the target moved an object
 *     while we copied); when it still disagrees the list is torn, and is
 *     walked again from a fresh snapshot, a few times at most;
 *   - a type object is trusted only when its own type has
 *     Py_TPFLAGS_TYPE_SUBCLASS and its sizes are plausible; trusted types
 *     are cached by address for one census; names are bounded and made
 *     valid UTF-8;
 *   - the snapshot never copies more than max_copy bytes.
 * Never prints.
 */
#include "heap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../target/pause.h"
#include "process.h"
#include "pydict.h"

#define BLOCK_SIZE (1ull << 20)
#define LIST_TRIES 5u               /* walks of one list before it is reported torn */
#define RELINKS_MAX 100000u         /* links re-read fresh in one walk */
#define COLLECT_WAIT_NS 2000000L    /* while a collection runs: wait, look again */
#define COLLECT_WAITS 500u          /* ... at most this many times (1 s) */
#define PROGRESS_EVERY 65536u
#define MAX_INTERPRETERS 256u
#define MAX_LISTS 1024u
#define TYPE_HEADER_MAX 1024u
#define BASICSIZE_MAX (1ll << 24)
#define ITEMSIZE_MAX (1ll << 16)
#define VARSIZE_MAX (1ull << 40)    /* bytes of items one object may have */

/* ---- snapshot: the target's memory, copied a block at a time ------------ */

struct block {
    uint64_t key;                   /* start of the aligned 1 MiB block; 0 = empty slot */
    uint64_t start, end;            /* the part copied: [start, end) */
    uint8_t *data;                  /* NULL: read this part exactly, every time */
};

struct snapshot {
    struct reader *reader;
    const struct proc_maps *maps;
    struct block *slots;
    size_t cap, used;
    struct block *last;
    uint64_t copied, max_copy;
};

static void snap_init(struct snapshot *s, struct reader *r, const struct proc_maps *maps,
                      uint64_t max_copy)
{
    memset(s, 0, sizeof *s);
    s->reader = r;
    s->maps = maps;
    s->max_copy = max_copy;
}

static void snap_clear(struct snapshot *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i].data);
    free(s->slots);
    s->slots = NULL;
    s->cap = s->used = 0;
    s->last = NULL;
}

static size_t slot_of(uint64_t key, size_t cap)
{
    return (size_t)(((key >> 20) * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

/* The two open-addressing tables here (blocks, types) hold entries whose
 * first 8 bytes are the key, 0 marking an empty slot; cap is a power of two. */
typedef size_t (*slot_fn)(uint64_t key, size_t cap);

static uint64_t entry_key(const void *entry)
{
    uint64_t key;
    memcpy(&key, entry, sizeof key);
    return key;
}

/* The first empty slot for key (the table is never full). */
static void *empty_slot(void *slots, size_t cap, size_t size, uint64_t key, slot_fn slot)
{
    size_t j = slot(key, cap);
    while (entry_key((char *)slots + j * size) != 0)
        j = (j + 1) & (cap - 1);
    return (char *)slots + j * size;
}

/* Room for one more entry: the table (doubled from first once half full),
 * or NULL when out of memory, the table unchanged. */
static void *table_reserve(void *slots, size_t *cap, size_t used, size_t size, size_t first,
                           slot_fn slot)
{
    if ((used + 1) * 2 <= *cap)
        return slots;
    size_t ncap = *cap ? *cap * 2 : first;
    char *n = calloc(ncap, size);
    if (n == NULL)
        return NULL;
    for (size_t i = 0; i < *cap; i++) {
        const char *e = (const char *)slots + i * size;
        if (entry_key(e) != 0)
            memcpy(empty_slot(n, ncap, size, entry_key(e), slot), e, size);
    }
    free(slots);
    *cap = ncap;
    return n;
}

/* The hash key of the block holding addr (0 marks an empty slot, so the
 * first megabyte, never mapped, shares the second's key). */
static uint64_t block_key(uint64_t addr)
{
    uint64_t key = addr & ~(BLOCK_SIZE - 1);
    return key ? key : BLOCK_SIZE;
}

static struct block *snap_find(struct snapshot *s, uint64_t addr)
{
    if (s->last && addr >= s->last->start && addr < s->last->end)
        return s->last;
    if (s->cap == 0)
        return NULL;
    uint64_t key = block_key(addr);
    for (size_t i = slot_of(key, s->cap);; i = (i + 1) & (s->cap - 1)) {
        struct block *b = &s->slots[i];
        if (b->key == 0)
            return NULL;
        if (b->key == key && addr >= b->start && addr < b->end)
            return s->last = b;
    }
}

static int snap_insert(struct snapshot *s, const struct block *nb, struct block **out,
                       struct pm_error *err)
{
    struct block *slots = table_reserve(s->slots, &s->cap, s->used, sizeof *slots, 256, slot_of);
    if (slots == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    s->slots = slots;
    struct block *b = empty_slot(s->slots, s->cap, sizeof *s->slots, nb->key, slot_of);
    *b = *nb;
    s->used++;
    *out = s->last = b;
    return 0;
}

/* The block holding addr, copied now if it was not yet; *out NULL when
 * addr is in no known mapping (read it exactly). */
static int snap_load(struct snapshot *s, uint64_t addr, struct block **out,
                     struct pm_error *err)
{
    *out = snap_find(s, addr);
    if (*out)
        return 0;
    struct block nb = {.key = block_key(addr), .start = addr & ~(BLOCK_SIZE - 1), .end = 0};
    nb.end = nb.start + BLOCK_SIZE;
    if (s->maps) {
        const struct map_entry *m = maps_find(s->maps, addr);
        if (m == NULL || m->perms[0] != 'r')
            return 0;
        if (m->start > nb.start)
            nb.start = m->start;
        if (m->end < nb.end)
            nb.end = m->end;
    }
    if (nb.start == 0 || nb.start >= nb.end)
        return 0;
    size_t len = (size_t)(nb.end - nb.start);
    if (s->copied + len > s->max_copy)
        return pm_fail(err, PM_EUSAGE,
                       "the census needs more than %llu MiB of the target's memory copied "
                       "(raise --max-copy)",
                       (unsigned long long)(s->max_copy >> 20));
    nb.data = malloc(len);
    if (nb.data == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory copying %zu bytes of the target", len);
    struct pm_error read_err;
    if (reader_read_fresh(s->reader, nb.start, nb.data, len, &read_err) != 0) {
        free(nb.data);
        nb.data = NULL;
        if (read_err.code == PM_EGONE || read_err.code == PM_EPERM) {
            *err = read_err;
            return -1;
        }
    } else {
        s->copied += len;
    }
    return snap_insert(s, &nb, out, err);
}

/* Copy len bytes at addr out of the snapshot (or exactly from the target). */
static int snap_read(struct snapshot *s, uint64_t addr, void *buf, size_t len,
                     struct pm_error *err)
{
    uint8_t *dst = buf;
    if (addr == 0 || addr + len < addr)
        return pm_fail(err, PM_EREAD, "bad address 0x%llx", (unsigned long long)addr);
    while (len > 0) {
        struct block *b;
        if (snap_load(s, addr, &b, err) != 0)
            return -1;
        if (b == NULL)
            return reader_read_fresh(s->reader, addr, dst, len, err);
        size_t n = (size_t)(b->end - addr) < len ? (size_t)(b->end - addr) : len;
        if (b->data)
            memcpy(dst, b->data + (addr - b->start), n);
        else if (reader_read_fresh(s->reader, addr, dst, n, err) != 0)
            return -1;
        dst += n;
        addr += n;
        len -= n;
    }
    return 0;
}

/* Re-read len bytes at addr from the target and update the snapshot. */
static int snap_refresh(struct snapshot *s, uint64_t addr, void *buf, size_t len,
                        struct pm_error *err)
{
    if (addr == 0 || addr + len < addr)
        return pm_fail(err, PM_EREAD, "bad address 0x%llx", (unsigned long long)addr);
    if (reader_read_fresh(s->reader, addr, buf, len, err) != 0)
        return -1;
    const uint8_t *src = buf;
    for (uint64_t a = addr, end = addr + len; a < end;) {
        struct block *b = snap_find(s, a);
        if (b == NULL) {
            a++;
            continue;
        }
        uint64_t stop = b->end < end ? b->end : end;
        if (b->data)
            memcpy(b->data + (a - b->start), src + (a - addr), (size_t)(stop - a));
        a = stop;
    }
    return 0;
}

/* ---- types -------------------------------------------------------------- */

struct type_entry {
    uint64_t addr;                  /* 0 = empty slot */
    int64_t basicsize, itemsize;
    int long_tag;                   /* items counted in lv_tag (3.12+ int subclasses) */
    uint64_t count, size;           /* counted in lists that finished */
    uint64_t list_count, list_size; /* counted in the list being walked */
    char name[HEAP_NAME_MAX];
};

struct census_state {
    const struct heap_source *src;
    const struct heap_options *opts;
    struct snapshot snap;
    struct type_entry *types;
    size_t types_cap, types_used;
    uint64_t objects, list_objects;
    uint64_t unreadable, list_unreadable;
    uint64_t relinks;
    unsigned retries;
    size_t node_len;                /* bytes read per node: head + object header */
    size_t type_len;                /* bytes read per type object */
    uint64_t prev_mask;
};

static uint64_t get_u64(const uint8_t *p, int64_t off)
{
    uint64_t v;
    memcpy(&v, p + off, sizeof v);
    return v;
}

static size_t type_slot(uint64_t addr, size_t cap)
{
    return (size_t)((addr * 0x9E3779B97F4A7C15ull) >> 24) & (cap - 1);
}

static struct type_entry *type_find(struct census_state *st, uint64_t addr)
{
    if (st->types_cap == 0 || addr == 0)   /* 0 marks an empty slot */
        return NULL;
    for (size_t i = type_slot(addr, st->types_cap);; i = (i + 1) & (st->types_cap - 1)) {
        if (st->types[i].addr == addr)
            return &st->types[i];
        if (st->types[i].addr == 0)
            return NULL;
    }
}

static struct type_entry *type_insert(struct census_state *st, uint64_t addr)
{
    struct type_entry *types = table_reserve(st->types, &st->types_cap, st->types_used,
                                             sizeof *types, 1024, type_slot);
    if (types == NULL)
        return NULL;
    st->types = types;
    struct type_entry *t = empty_slot(st->types, st->types_cap, sizeof *st->types, addr, type_slot);
    st->types_used++;
    memset(t, 0, sizeof *t);
    t->addr = addr;
    return t;
}

/* Make s valid, printable UTF-8 in place: control characters and bytes
 * that do not form a valid sequence become '?'. */
static void sanitize_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3
                 : (*p & 0xF8) == 0xF0 ? 4 : 0;
        int ok = n > 0 && !(n == 1 && (*p < 0x20 || *p == 0x7F)) && !(n == 2 && *p < 0xC2) &&
                 !(n == 4 && *p > 0xF4);
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xC0) == 0x80;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

/* A NUL-terminated string of at most cap-1 bytes at addr, from the snapshot. */
static int snap_cstr(struct snapshot *s, uint64_t addr, char *out, size_t cap,
                     struct pm_error *err)
{
    size_t n = 0;
    while (n + 1 < cap) {
        char c;
        if (snap_read(s, addr + n, &c, 1, err) != 0) {
            if (n == 0)
                return -1;
            break;
        }
        if (c == '\0')
            break;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

/* module.qualname of a heap type, as repr() shows it ("builtins." left out). */
static int heap_type_name(struct census_state *st, uint64_t type, const uint8_t *header,
                          char *out, size_t cap)
{
    const struct py_gclayout *gc = st->src->gc;
    struct py_objctx *objs = st->src->objects;
    if (objs == NULL || gc->heaptype_qualname == PY_OFF_NONE)
        return -1;
    char qualname[HEAP_NAME_MAX], module[HEAP_NAME_MAX];
    uint64_t qualname_obj, module_obj = 0;
    if (reader_u64(objs->reader, type + (uint64_t)gc->heaptype_qualname, &qualname_obj,
                   NULL) != 0 ||
        py_str_utf8(objs, qualname_obj, qualname, sizeof qualname, NULL) != 0 || !qualname[0])
        return -1;
    uint64_t dict = get_u64(header, gc->type_dict);
    if (dict == 0 || py_dict_get_str(objs, dict, "__module__", &module_obj, NULL) != 0 ||
        module_obj == 0 || py_str_utf8(objs, module_obj, module, sizeof module, NULL) != 0 ||
        !module[0] || strcmp(module, "builtins") == 0)
        snprintf(out, cap, "%s", qualname);
    else
        snprintf(out, cap, "%s.%s", module, qualname);
    return 0;
}

/* The type object at addr, read and checked, or NULL when it is not one. */
static struct type_entry *type_load(struct census_state *st, uint64_t addr, struct pm_error *err)
{
    const struct py_gclayout *gc = st->src->gc;
    struct type_entry *t = type_find(st, addr);
    if (t)
        return t;
    if (addr == 0 || (addr & 7) != 0)
        return NULL;
    uint8_t header[TYPE_HEADER_MAX];
    uint64_t meta_flags;
    struct pm_error ignored;
    if (snap_read(&st->snap, addr, header, st->type_len, &ignored) != 0)
        return NULL;
    uint64_t meta = get_u64(header, gc->ob_type);
    if (meta == 0 || (meta & 7) != 0 ||
        snap_read(&st->snap, meta + (uint64_t)gc->type_flags, &meta_flags, 8, &ignored) != 0 ||
        !(meta_flags & (uint64_t)gc->flag_type_subclass))
        return NULL;
    int64_t basicsize = (int64_t)get_u64(header, gc->type_basicsize);
    int64_t itemsize = (int64_t)get_u64(header, gc->type_itemsize);
    uint64_t flags = get_u64(header, gc->type_flags);
    if (basicsize <= 0 || basicsize > BASICSIZE_MAX || itemsize < 0 || itemsize > ITEMSIZE_MAX)
        return NULL;
    char name[HEAP_NAME_MAX];
    uint64_t name_ptr = get_u64(header, gc->type_name);
    if (name_ptr == 0 || snap_cstr(&st->snap, name_ptr, name, sizeof name, &ignored) != 0 ||
        !name[0])
        return NULL;
    if (flags & (uint64_t)gc->flag_heaptype) {
        char full[2 * HEAP_NAME_MAX + 2];
        if (heap_type_name(st, addr, header, full, sizeof full) == 0) {
            size_t n = strnlen(full, sizeof name - 1);
            memcpy(name, full, n);
            name[n] = '\0';
        }
    }
    sanitize_utf8(name);
    t = type_insert(st, addr);
    if (t == NULL) {
        pm_fail(err, PM_ENOMEM, "out of memory");
        return NULL;
    }
    t->basicsize = basicsize;
    t->itemsize = itemsize;
    t->long_tag = gc->long_tag != PY_OFF_NONE && gc->flag_long_subclass != PY_OFF_NONE &&
                  (flags & (uint64_t)gc->flag_long_subclass);
    memcpy(t->name, name, sizeof name);
    return t;
}

/* Count the object whose node (PyGC_Head) was read into `node`: 0, or 1
 * when its type cannot be read (the caller decides), -1 on ENOMEM. */
static int count_object(struct census_state *st, uint64_t gc_addr, uint8_t *node,
                        struct pm_error *err)
{
    const struct py_gclayout *gc = st->src->gc;
    const uint8_t *obj = node + gc->gchead_size;
    struct pm_error type_err = {0};
    struct type_entry *t = type_load(st, get_u64(obj, gc->ob_type), &type_err);
    if (t == NULL && type_err.code == PM_ENOMEM) {
        *err = type_err;
        return -1;
    }
    if (t == NULL) {
        /* the object may have been freed and reused since its block was
         * copied: look at it once more, fresh */
        if (snap_refresh(&st->snap, gc_addr, node, st->node_len, &type_err) == 0)
            t = type_load(st, get_u64(obj, gc->ob_type), &type_err);
        if (t == NULL && type_err.code == PM_ENOMEM) {
            *err = type_err;
            return -1;
        }
    }
    if (t == NULL)
        return 1;
    st->list_objects++;
    uint64_t items = 0;
    if (t->itemsize > 0) {
        int64_t n = (int64_t)get_u64(obj, t->long_tag ? gc->long_tag : gc->ob_size);
        if (t->long_tag)
            items = (uint64_t)n >> gc->long_non_size_bits;
        else
            items = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
        /* a few types with an item size keep no ob_size (3.11+ generators
         * and frames size their slots from the code object): a count no
         * object could have means "not a count", and only the base is
         * counted */
        if (items > VARSIZE_MAX / (uint64_t)t->itemsize)
            items = 0;
    }
    t->list_count++;
    t->list_size += (uint64_t)t->basicsize + items * (uint64_t)t->itemsize;
    return 0;
}

static int torn_list(struct pm_error *err, uint64_t head, const char *why, uint64_t addr)
{
    return pm_fail(err, PM_ETORN, "the GC list at 0x%llx changed while it was read (%s at 0x%llx)",
                   (unsigned long long)head, why, (unsigned long long)addr);
}

/* Brent's cycle detection. */
struct cycle_check {
    uint64_t tortoise, power, steps;
};

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

/* Walk one list once.  PM_ETORN when it is inconsistent. */
static int walk_list(struct census_state *st, uint64_t head, struct pm_error *err)
{
    const struct py_gclayout *gc = st->src->gc;
    uint64_t max_objects = st->opts->max_objects;
    uint8_t node[256], head_node[256];
    if (snap_read(&st->snap, head, head_node, (size_t)gc->gchead_size, err) != 0)
        return pm_wrap(err, "reading the GC list head at 0x%llx", (unsigned long long)head);
    uint64_t prev = head, cur = get_u64(head_node, gc->gchead_next);
    uint64_t relinks = 0, steps = 0;
    struct cycle_check cycle = {0, 1, 0};
    for (;;) {
        int checked = 0;
        struct pm_error read_err = {0};
        if (cur == head) {
            /* the list closes: the head must agree it ends here */
            if (snap_refresh(&st->snap, head, head_node, (size_t)gc->gchead_size, err) != 0)
                return -1;
            if ((get_u64(head_node, gc->gchead_prev) & st->prev_mask) == prev)
                return 0;
        } else if (cur != 0 && (cur & 7) == 0 &&
                   snap_read(&st->snap, cur, node, st->node_len, &read_err) == 0) {
            checked = (get_u64(node, gc->gchead_prev) & st->prev_mask) == prev;
        } else if (read_err.code == PM_EGONE || read_err.code == PM_EPERM ||
                   read_err.code == PM_EUSAGE || read_err.code == PM_ENOMEM) {
            *err = read_err;
            return -1;
        }
        if (!checked && cur != head) {
            /* the link disagrees with the copy: ask the target again, and
             * go on only where the list is consistent now */
            uint8_t fresh[256];
            if (++relinks > RELINKS_MAX)
                return torn_list(err, head, "too many moved links", cur);
            if (snap_refresh(&st->snap, prev, fresh, (size_t)gc->gchead_size, err) != 0)
                return torn_list(err, head, "unreadable node", prev);
            uint64_t next = get_u64(fresh, gc->gchead_next);
            if (next != cur && next != 0 && (next & 7) == 0) {
                /* prev links elsewhere now: its new successor is checked next */
                st->relinks++;
                cur = next;
                continue;
            }
            if (cur == 0 || (cur & 7) != 0 || next != cur ||
                snap_refresh(&st->snap, cur, node, st->node_len, err) != 0)
                return torn_list(err, head, "bad link", cur);
            if ((get_u64(node, gc->gchead_prev) & st->prev_mask) != prev)
                return torn_list(err, head, "broken back link", cur);
            st->relinks++;
        } else if (cur == head) {
            /* the head ends elsewhere now: did the last node gain a successor? */
            uint8_t fresh[256];
            if (++relinks > RELINKS_MAX)
                return torn_list(err, head, "too many moved links", cur);
            if (snap_refresh(&st->snap, prev, fresh, (size_t)gc->gchead_size, err) != 0)
                return torn_list(err, head, "unreadable node", prev);
            uint64_t next = get_u64(fresh, gc->gchead_next);
            if (next == head || next == 0 || (next & 7) != 0)
                return torn_list(err, head, "broken back link", head);
            st->relinks++;
            cur = next;
            continue;
        }
        if (++steps > max_objects)
            return pm_fail(err, PM_EUSAGE,
                           "a GC list holds more than %llu objects (raise --max-objects)",
                           (unsigned long long)max_objects);
        if (cycle_step(&cycle, cur) != 0)
            return torn_list(err, head, "a cycle", cur);
        int counted = count_object(st, cur, node, err);
        if (counted < 0)
            return -1;
        if (counted > 0) {
            /* the head of another list: a collection moved us there */
            for (size_t i = 0; i < st->src->nheads; i++)
                if (st->src->heads[i] == cur)
                    return torn_list(err, head, "another list's head", cur);
            st->list_objects++;
            st->list_unreadable++;
        }
        if (st->opts->progress && ((st->objects + st->list_objects) % PROGRESS_EVERY) == 0)
            st->opts->progress(st->opts->progress_ctx, st->objects + st->list_objects,
                               st->snap.copied);
        prev = cur;
        cur = get_u64(node, gc->gchead_next);
    }
}

/* Move the counts of the list just walked into the totals (commit) or
 * drop them (a torn walk). */
static void settle_list(struct census_state *st, int commit)
{
    for (size_t i = 0; i < st->types_cap; i++) {
        struct type_entry *t = &st->types[i];
        if (t->addr == 0)
            continue;
        if (commit) {
            t->count += t->list_count;
            t->size += t->list_size;
        }
        t->list_count = t->list_size = 0;
    }
    if (commit) {
        st->objects += st->list_objects;
        st->unreadable += st->list_unreadable;
    }
    st->list_objects = st->list_unreadable = 0;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {0, ns};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Wait while the target's collector runs (it rewires the lists). */
static int wait_not_collecting(struct census_state *st, uint64_t collecting,
                               struct pm_error *err)
{
    if (collecting == 0)
        return 0;
    for (unsigned i = 0; i < COLLECT_WAITS; i++) {
        int32_t busy;
        if (reader_read_fresh(st->src->reader, collecting, &busy, sizeof busy, err) != 0)
            return -1;
        if (!busy)
            return 0;
        sleep_ns(COLLECT_WAIT_NS);
    }
    return pm_fail(err, PM_ETORN, "the target's garbage collector kept running for over 1 s");
}

static int walk_with_retries(struct census_state *st, uint64_t head, uint64_t collecting,
                             struct pm_error *err)
{
    for (unsigned attempt = 0;; attempt++) {
        if (wait_not_collecting(st, collecting, err) != 0)
            return -1;
        pm_clear(err);
        int rc = walk_list(st, head, err);
        settle_list(st, rc == 0);
        if (rc == 0)
            return 0;
        if (err->code != PM_ETORN && err->code != PM_EREAD)
            return -1;
        if (attempt + 1 >= st->opts->tries)
            return pm_wrap(err, "after %u tries", st->opts->tries);
        /* start this list again from a fresh copy of the target */
        st->retries++;
        snap_clear(&st->snap);
        sleep_ns(COLLECT_WAIT_NS);
    }
}

static int compare_counts(const void *a, const void *b)
{
    const struct heap_type_count *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const struct heap_type_count *)a)->name,
                  ((const struct heap_type_count *)b)->name);
}

/* The per-type totals, merged by name (two classes may share one) and sorted. */
static int collect_types(struct census_state *st, struct heap_census *out, struct pm_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < st->types_cap; i++)
        n += st->types[i].addr != 0 && st->types[i].count > 0;
    out->types = calloc(n ? n : 1, sizeof *out->types);
    if (out->types == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < st->types_cap; i++) {
        const struct type_entry *t = &st->types[i];
        if (t->addr == 0 || t->count == 0)
            continue;
        memcpy(out->types[k].name, t->name, sizeof t->name);
        out->types[k].count = t->count;
        out->types[k].size = t->size;
        out->size += t->size;
        k++;
    }
    qsort(out->types, k, sizeof *out->types, compare_names);
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        if (m > 0 && strcmp(out->types[m - 1].name, out->types[i].name) == 0) {
            out->types[m - 1].count += out->types[i].count;
            out->types[m - 1].size += out->types[i].size;
        } else {
            out->types[m++] = out->types[i];
        }
    }
    qsort(out->types, m, sizeof *out->types, compare_counts);
    out->ntypes = m;
    return 0;
}

static int census_lists(const struct heap_source *src, const struct heap_options *opts,
                        const uint64_t *collecting, struct heap_census *out,
                        struct pm_error *err)
{
    struct pm_error ignored;
    if (err == NULL)
        err = &ignored;
    struct heap_options o = *opts;
    if (o.max_copy == 0)
        o.max_copy = HEAP_DEFAULT_MAX_COPY;
    if (o.max_objects == 0)
        o.max_objects = HEAP_DEFAULT_MAX_OBJECTS;
    if (o.tries == 0)
        o.tries = LIST_TRIES;
    const struct py_gclayout *gc = src->gc;
    memset(out, 0, sizeof *out);
    int64_t node_fields[] = {gc->ob_type, gc->ob_size, gc->long_tag};
    int64_t node_end = 0;
    for (size_t i = 0; i < 3; i++)
        if (node_fields[i] != PY_OFF_NONE && node_fields[i] + 8 > node_end)
            node_end = node_fields[i] + 8;
    int64_t type_fields[] = {gc->ob_type, gc->type_name, gc->type_basicsize,
                             gc->type_itemsize, gc->type_flags, gc->type_dict};
    int64_t type_end = 0;
    for (size_t i = 0; i < sizeof type_fields / sizeof type_fields[0]; i++)
        if (type_fields[i] + 8 > type_end)
            type_end = type_fields[i] + 8;
    if (gc->gchead_size <= 0 || gc->gchead_size + node_end > 256 ||
        type_end > TYPE_HEADER_MAX || gc->gchead_prev_shift < 0 || gc->gchead_prev_shift > 3)
        return pm_fail(err, PM_EINTERNAL, "implausible GC layout for Python %d.%d", gc->major,
                       gc->minor);
    struct census_state st = {.src = src, .opts = &o};
    st.node_len = (size_t)(gc->gchead_size + node_end);
    st.type_len = (size_t)type_end;
    st.prev_mask = ~(((uint64_t)1 << gc->gchead_prev_shift) - 1);
    snap_init(&st.snap, src->reader, src->maps, o.max_copy);
    uint64_t syscalls0 = src->reader->stats.syscalls;
    int rc = 0;
    for (size_t i = 0; i < src->nheads && rc == 0; i++) {
        rc = walk_with_retries(&st, src->heads[i], collecting ? collecting[i] : src->collecting,
                               err);
        if (rc != 0)
            pm_wrap(err, "counting objects");
    }
    if (rc == 0)
        rc = collect_types(&st, out, err);
    out->objects = st.objects;
    out->unreadable = st.unreadable;
    out->lists = src->nheads;
    out->retries = st.retries;
    out->relinks = st.relinks;
    out->copied = st.snap.copied;
    out->syscalls = src->reader->stats.syscalls - syscalls0;
    snap_clear(&st.snap);
    free(st.types);
    if (rc != 0)
        heap_census_free(out);
    return rc;
}

int heap_census_lists(const struct heap_source *src, const struct heap_options *opts,
                      struct heap_census *out, struct pm_error *err)
{
    return census_lists(src, opts, NULL, out, err);
}

void heap_census_free(struct heap_census *c)
{
    if (c == NULL)
        return;
    free(c->types);
    c->types = NULL;
    c->ntypes = 0;
}

/* ---- a live process ----------------------------------------------------- */

struct lists {
    uint64_t heads[MAX_LISTS];
    uint64_t collecting[MAX_LISTS];
    size_t n;
    size_t interpreters;
};

/* The generations (and the permanent generation) of one GC state. */
static void add_gc_state(const struct py_gclayout *gc, uint64_t state, struct lists *ls)
{
    for (int64_t g = 0; g < gc->num_generations && ls->n < MAX_LISTS; g++) {
        ls->heads[ls->n] = state + (uint64_t)gc->gc_generations +
                           (uint64_t)(g * gc->generation_size + gc->generation_head);
        ls->collecting[ls->n++] = state + (uint64_t)gc->gc_collecting;
    }
    if (gc->gc_permanent != PY_OFF_NONE && ls->n < MAX_LISTS) {
        ls->heads[ls->n] = state + (uint64_t)(gc->gc_permanent + gc->generation_head);
        ls->collecting[ls->n++] = state + (uint64_t)gc->gc_collecting;
    }
}

static int find_lists(struct py_process *py, const struct py_gclayout *gc, struct lists *ls,
                      struct pm_error *err)
{
    const struct py_location *loc = py_get_location(py);
    const struct py_layout *l = py_get_layout(py);
    struct reader *r = py_reader(py);
    memset(ls, 0, sizeof *ls);
    if (gc->where == PY_GC_STATIC) {
        uint64_t first;
        if (loc->gc_generation0 == 0)
            return pm_fail(err, PM_EUNSUPPORTED,
                           "heap: Python %s in %s exports no _PyGC_generation0, so its GC lists "
                           "cannot be found",
                           loc->version.text, loc->binary);
        if (reader_u64(r, loc->gc_generation0, &first, err) != 0)
            return pm_wrap(err, "reading _PyGC_generation0");
        if (first == 0)
            return 0;   /* not initialised yet */
        uint64_t base = first - (uint64_t)gc->generation_head;
        for (int64_t g = 0; g < gc->num_generations; g++)
            ls->heads[ls->n++] = base + (uint64_t)(g * gc->generation_size + gc->generation_head);
        ls->interpreters = 1;
        return 0;
    }
    if (loc->runtime_addr == 0 || l->runtime_interpreters_head == PY_OFF_NONE)
        return pm_fail(err, PM_EUNSUPPORTED, "heap: Python %s in %s has no _PyRuntime",
                       loc->version.text, loc->binary);
    if (gc->where == PY_GC_RUNTIME) {
        add_gc_state(gc, loc->runtime_addr + (uint64_t)gc->gc_state, ls);
        ls->interpreters = 1;
        return 0;
    }
    uint64_t interp, seen[MAX_INTERPRETERS];
    if (reader_u64(r, loc->runtime_addr + (uint64_t)l->runtime_interpreters_head, &interp,
                   err) != 0)
        return pm_wrap(err, "reading the interpreter list");
    while (interp != 0) {
        for (size_t i = 0; i < ls->interpreters; i++)
            if (seen[i] == interp)
                return pm_fail(err, PM_ETORN, "the interpreter list loops");
        if (ls->interpreters == MAX_INTERPRETERS)
            return pm_fail(err, PM_ETORN, "more than %u interpreters", MAX_INTERPRETERS);
        seen[ls->interpreters++] = interp;
        add_gc_state(gc, interp + (uint64_t)gc->gc_state, ls);
        if (reader_u64(r, interp + (uint64_t)l->interp_next, &interp, err) != 0)
            return pm_wrap(err, "reading the interpreter list");
    }
    return 0;
}

/* With the target stopped: wait (running) until no collection is under way. */
static int pause_between_collections(struct pause_set *ps, struct reader *r,
                                     const struct lists *ls, struct pm_error *err)
{
    for (unsigned i = 0; i < COLLECT_WAITS; i++) {
        if (pause_all(ps, err) != 0)
            return -1;
        int busy = 0;
        for (size_t k = 0; k < ls->n && !busy; k++) {
            int32_t v = 0;
            if (ls->collecting[k] && reader_read_fresh(r, ls->collecting[k], &v, sizeof v,
                                                       err) != 0) {
                pause_resume(ps);
                return -1;
            }
            busy = v != 0;
        }
        if (!busy)
            return 0;
        pause_resume(ps);
        sleep_ns(COLLECT_WAIT_NS);
    }
    return pm_fail(err, PM_ETORN, "the target's garbage collector kept running for over 1 s");
}

int heap_census_process(struct py_process *py, const struct heap_options *opts,
                        struct heap_census *out, struct pm_error *err)
{
    const struct py_version *v = py_get_version(py);
    const struct py_gclayout *gc = py_gclayout_for(v->major, v->minor);
    memset(out, 0, sizeof *out);
    if (gc == NULL)
        return pm_fail(err, PM_EUNSUPPORTED,
                       "heap: Python %s is not supported (the census reads 2.7 and 3.6 to 3.13)",
                       v->text);
    struct reader *r = py_reader(py);
    reader_new_epoch(r);
    struct py_objctx objects, *objs = NULL;
    struct pm_error ignored;
    if (py_objctx_init_process(&objects, py, &ignored) == 0)
        objs = &objects;
    struct lists *ls = calloc(1, sizeof *ls);
    if (ls == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory");
    struct proc_maps maps = {0};
    struct pause_set *ps = NULL;
    int have_maps = 0, rc = -1;
    if (find_lists(py, gc, ls, err) != 0)
        goto out;
    if (py_pid(py) > 0) {
        if (maps_read(py_pid(py), &maps, err) != 0)
            goto out;
        have_maps = 1;
    }
    struct heap_source src = {.reader = r, .gc = gc, .objects = objs,
                              .maps = have_maps ? &maps : NULL, .heads = ls->heads,
                              .nheads = ls->n};
    if (opts->blocking && py_pid(py) > 0) {
        ps = pause_new(py_pid(py));
        if (ps == NULL) {
            pm_fail(err, PM_ENOMEM, "out of memory");
            goto out;
        }
        if (pause_between_collections(ps, r, ls, err) != 0)
            goto out;
        rc = census_lists(&src, opts, NULL, out, err);
        out->paused = 1;
        pause_resume(ps);
    } else {
        rc = census_lists(&src, opts, ls->collecting, out, err);
    }
    out->interpreters = ls->interpreters;
out:
    pause_free(ps);
    if (have_maps)
        maps_free(&maps);
    free(ls);
    return rc;
}

/* ---- growth between two censuses ----------------------------------------- */

static int compare_growth(const void *a, const void *b)
{
    const struct heap_growth *x = a, *y = b;
    if (x->size_delta != y->size_delta)
        return x->size_delta > y->size_delta ? -1 : 1;
    if (x->count_delta != y->count_delta)
        return x->count_delta > y->count_delta ? -1 : 1;
    return strcmp(x->name, y->name);
}

int heap_growth(const struct heap_census *before, const struct heap_census *after,
                struct heap_growth **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    struct heap_type_count *sorted = NULL;
    if (before->ntypes) {
        sorted = malloc(before->ntypes * sizeof *sorted);
        if (sorted == NULL)
            return -1;
        memcpy(sorted, before->types, before->ntypes * sizeof *sorted);
        qsort(sorted, before->ntypes, sizeof *sorted, compare_names);
    }
    struct heap_growth *g = calloc(after->ntypes ? after->ntypes : 1, sizeof *g);
    if (g == NULL) {
        free(sorted);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < after->ntypes; i++) {
        const struct heap_type_count *a = &after->types[i], *b = NULL;
        if (sorted) {
            struct heap_type_count key;
            memcpy(key.name, a->name, sizeof key.name);
            b = bsearch(&key, sorted, before->ntypes, sizeof *sorted, compare_names);
        }
        uint64_t cb = b ? b->count : 0, sb = b ? b->size : 0;
        if (a->count <= cb && a->size <= sb)
            continue;
        g[n].name = a->name;
        g[n].count_before = cb;
        g[n].count_after = a->count;
        g[n].size_before = sb;
        g[n].size_after = a->size;
        g[n].count_delta = (int64_t)a->count - (int64_t)cb;
        g[n].size_delta = (int64_t)a->size - (int64_t)sb;
        n++;
    }
    free(sorted);
    qsort(g, n, sizeof *g, compare_growth);
    *out = g;
    *count = n;
    return 0;
}
