/*
 * profile.c — the aggregated profile: interning of strings, frames, threads
 * and stacks, stack counts, and the run-length timeline of samples.
 *
 * Owns: every allocation reachable from a struct profile, and the private
 * open-addressing hash tables (struct profile_hash) that make interning a
 * lookup.  Adding samples of a stack already seen is a hash probe plus a
 * counter update: no allocation except the amortised growth of the timeline.
 *
 * Invariants:
 *   - ids are array indexes and never change; UINT32_MAX means "failed"
 *     (out of memory or an invalid argument) and is never a valid id;
 *   - string id 0 is "";
 *   - a failed call leaves the profile exactly as it was.
 *
 * Never reads process memory, never prints, never does file I/O.
 */
#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_ID UINT32_MAX
/* Largest id we hand out; NO_ID itself is reserved for failure. */
#define MAX_ID (UINT32_MAX - 1)

/* ---------------------------------------------------------------------------
 * Open-addressing hash table of ids.  The table stores ids only; the key of
 * an id lives in the profile's arrays, and a caller-supplied predicate
 * compares a probe key with an id's key.  Each slot caches its id's hash so
 * that growing never recomputes hashes and most mismatches are rejected
 * without touching the profile.
 * ------------------------------------------------------------------------- */

struct profile_hash {
    uint32_t *ids;     /* per slot: an id, or NO_ID when the slot is free */
    uint32_t *hashes;  /* per slot: the hash of the id's key */
    size_t cap;        /* number of slots, a power of two (0 before first use) */
    size_t used;       /* occupied slots */
};

typedef int (*hash_same_key_fn)(const struct profile *p, uint32_t id, const void *key);

enum { HASH_INITIAL_SLOTS = 64 };

static void hash_free(struct profile_hash *h)
{
    if (h == NULL)
        return;
    free(h->ids);
    free(h->hashes);
    free(h);
}

/* Return the id whose key equals `key`, or NO_ID. */
static uint32_t hash_find(const struct profile *p, const struct profile_hash *h,
                          uint32_t hash, hash_same_key_fn same_key, const void *key)
{
    if (h->cap == 0)
        return NO_ID;
    size_t mask = h->cap - 1;
    for (size_t slot = hash & mask;; slot = (slot + 1) & mask) {
        uint32_t id = h->ids[slot];
        if (id == NO_ID)
            return NO_ID;
        if (h->hashes[slot] == hash && same_key(p, id, key))
            return id;
    }
}

static void hash_place(struct profile_hash *h, uint32_t hash, uint32_t id)
{
    size_t mask = h->cap - 1;
    size_t slot = hash & mask;
    while (h->ids[slot] != NO_ID)
        slot = (slot + 1) & mask;
    h->ids[slot] = id;
    h->hashes[slot] = hash;
    h->used++;
}

/* Make sure one more id fits while keeping the load factor under 3/4.
 * Returns 0, or -1 when out of memory (the table is unchanged). */
static int hash_reserve_one(struct profile_hash *h)
{
    if ((h->used + 1) * 4 <= h->cap * 3)
        return 0;
    size_t new_cap = h->cap ? h->cap * 2 : HASH_INITIAL_SLOTS;
    if (new_cap > SIZE_MAX / sizeof(uint32_t))
        return -1;
    uint32_t *ids = malloc(new_cap * sizeof *ids);
    uint32_t *hashes = malloc(new_cap * sizeof *hashes);
    if (ids == NULL || hashes == NULL) {
        free(ids);
        free(hashes);
        return -1;
    }
    memset(ids, 0xff, new_cap * sizeof *ids);  /* every slot NO_ID */
    struct profile_hash grown = { ids, hashes, new_cap, 0 };
    for (size_t slot = 0; slot < h->cap; slot++)
        if (h->ids[slot] != NO_ID)
            hash_place(&grown, h->hashes[slot], h->ids[slot]);
    free(h->ids);
    free(h->hashes);
    *h = grown;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Hash functions.
 * ------------------------------------------------------------------------- */

/* A 64-bit finaliser (murmur3's fmix64): spreads every input bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint32_t fold32(uint64_t x)
{
    return (uint32_t)(x ^ (x >> 32));
}

static uint32_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;  /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return fold32(mix64(h ^ len));
}

static uint64_t hash_combine(uint64_t h, uint64_t value)
{
    return mix64(h ^ (value + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

/* ---------------------------------------------------------------------------
 * Growing arrays.
 * ------------------------------------------------------------------------- */

/* Return `arr` grown so that it holds at least `need` elements of `elem`
 * bytes (its capacity `*cap` is updated), capacity never above `max_cap`.
 * Returns NULL, leaving `arr` and `*cap` untouched, when out of memory or
 * when `need` exceeds `max_cap`. */
static void *grow_array(void *arr, size_t elem, size_t *cap, size_t need, size_t max_cap)
{
    if (need <= *cap)
        return arr;
    if (need > max_cap || need > SIZE_MAX / elem)
        return NULL;
    size_t new_cap = *cap < 16 ? 16 : *cap;
    while (new_cap < need)
        new_cap = new_cap > SIZE_MAX / 2 ? need : new_cap * 2;
    if (new_cap > max_cap)
        new_cap = max_cap;
    if (new_cap > SIZE_MAX / elem)
        new_cap = need;
    void *grown = realloc(arr, new_cap * elem);
    if (grown == NULL)
        return NULL;
    *cap = new_cap;
    return grown;
}

/* ---------------------------------------------------------------------------
 * Creation and release.
 * ------------------------------------------------------------------------- */

struct profile *profile_new(void)
{
    struct profile *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->string_index = calloc(1, sizeof *p->string_index);
    p->frame_index = calloc(1, sizeof *p->frame_index);
    p->stack_index = calloc(1, sizeof *p->stack_index);
    p->thread_index = calloc(1, sizeof *p->thread_index);
    if (p->string_index == NULL || p->frame_index == NULL || p->stack_index == NULL ||
        p->thread_index == NULL || profile_string(p, "") != 0) {
        profile_free(p);
        return NULL;
    }
    return p;
}

void profile_free(struct profile *p)
{
    if (p == NULL)
        return;
    for (uint32_t i = 0; i < p->nstrings; i++)
        free(p->strings[i]);
    free(p->strings);
    free(p->frames);
    free(p->threads);
    free(p->thread_last_run);
    free(p->stacks);
    free(p->frame_pool);
    free(p->runs);
    hash_free(p->string_index);
    hash_free(p->frame_index);
    hash_free(p->stack_index);
    hash_free(p->thread_index);
    free(p);
}

/* ---------------------------------------------------------------------------
 * Strings.
 * ------------------------------------------------------------------------- */

struct string_key {
    const char *text;
    size_t len;
};

static int string_has_key(const struct profile *p, uint32_t id, const void *key)
{
    const struct string_key *k = key;
    const char *s = p->strings[id];
    return strncmp(s, k->text, k->len) == 0 && s[k->len] == '\0';
}

uint32_t profile_string(struct profile *p, const char *s)
{
    if (s == NULL)
        s = "";
    struct string_key key = { s, strlen(s) };
    uint32_t hash = hash_bytes(s, key.len);
    uint32_t id = hash_find(p, p->string_index, hash, string_has_key, &key);
    if (id != NO_ID)
        return id;

    size_t cap = p->strings_cap;
    char **strings = grow_array(p->strings, sizeof *strings, &cap, (size_t)p->nstrings + 1,
                                MAX_ID);
    if (strings == NULL)
        return NO_ID;
    p->strings = strings;
    p->strings_cap = (uint32_t)cap;
    if (hash_reserve_one(p->string_index) != 0)
        return NO_ID;
    char *copy = malloc(key.len + 1);
    if (copy == NULL)
        return NO_ID;
    memcpy(copy, s, key.len + 1);

    id = p->nstrings++;
    p->strings[id] = copy;
    hash_place(p->string_index, hash, id);
    return id;
}

/* ---------------------------------------------------------------------------
 * Frames: keyed by (name, filename, short_file, line, kind) string ids.
 * ------------------------------------------------------------------------- */

static int frame_has_key(const struct profile *p, uint32_t id, const void *key)
{
    const struct profile_frame *a = &p->frames[id], *b = key;
    return a->name == b->name && a->filename == b->filename &&
           a->short_file == b->short_file && a->line == b->line && a->kind == b->kind;
}

static uint32_t frame_hash(const struct profile_frame *f)
{
    uint64_t h = hash_combine(f->name, f->filename);
    h = hash_combine(h, f->short_file);
    h = hash_combine(h, (uint32_t)f->line);
    return fold32(hash_combine(h, f->kind));
}

uint32_t profile_frame(struct profile *p, const char *name, const char *filename,
                       const char *short_file, int line, uint32_t kind)
{
    struct profile_frame key = {
        .name = profile_string(p, name),
        .filename = profile_string(p, filename),
        .short_file = profile_string(p, short_file),
        .line = line,
        .kind = kind,
    };
    if (key.name == NO_ID || key.filename == NO_ID || key.short_file == NO_ID)
        return NO_ID;
    uint32_t hash = frame_hash(&key);
    uint32_t id = hash_find(p, p->frame_index, hash, frame_has_key, &key);
    if (id != NO_ID)
        return id;

    size_t cap = p->frames_cap;
    struct profile_frame *frames = grow_array(p->frames, sizeof *frames, &cap,
                                              (size_t)p->nframes + 1, MAX_ID);
    if (frames == NULL)
        return NO_ID;
    p->frames = frames;
    p->frames_cap = (uint32_t)cap;
    if (hash_reserve_one(p->frame_index) != 0)
        return NO_ID;

    id = p->nframes++;
    p->frames[id] = key;
    hash_place(p->frame_index, hash, id);
    return id;
}

/* ---------------------------------------------------------------------------
 * Threads: keyed by (pid, thread_id).
 * ------------------------------------------------------------------------- */

struct thread_key {
    uint32_t pid;
    uint64_t thread_id;
};

static int thread_has_key(const struct profile *p, uint32_t id, const void *key)
{
    const struct thread_key *k = key;
    return p->threads[id].pid == k->pid && p->threads[id].thread_id == k->thread_id;
}

/* Grow threads[] and thread_last_run[] together (they share threads_cap). */
static int reserve_thread_slot(struct profile *p)
{
    if (p->nthreads < p->threads_cap)
        return 0;
    size_t cap = p->threads_cap;
    struct profile_thread *threads = grow_array(p->threads, sizeof *threads, &cap,
                                                (size_t)p->nthreads + 1, MAX_ID);
    if (threads == NULL)
        return -1;
    p->threads = threads;
    size_t *last_run = realloc(p->thread_last_run, cap * sizeof *last_run);
    if (last_run == NULL)
        return -1;  /* threads[] is larger but threads_cap still tells the truth */
    p->thread_last_run = last_run;
    p->threads_cap = (uint32_t)cap;
    return 0;
}

uint32_t profile_thread(struct profile *p, uint32_t pid, uint64_t thread_id,
                        uint64_t os_thread_id, const char *name)
{
    struct thread_key key = { pid, thread_id };
    uint32_t hash = fold32(hash_combine(mix64(thread_id), pid));
    uint32_t id = hash_find(p, p->thread_index, hash, thread_has_key, &key);
    if (id == NO_ID) {
        uint32_t name_id = profile_string(p, name);
        if (name_id == NO_ID || reserve_thread_slot(p) != 0 ||
            hash_reserve_one(p->thread_index) != 0)
            return NO_ID;
        id = p->nthreads++;
        p->threads[id] = (struct profile_thread){
            .thread_id = thread_id,
            .os_thread_id = os_thread_id,
            .name = name_id,
            .pid = pid,
        };
        p->thread_last_run[id] = 0;
        hash_place(p->thread_index, hash, id);
        return id;
    }
    struct profile_thread *t = &p->threads[id];
    if (os_thread_id != 0)
        t->os_thread_id = os_thread_id;
    if (name != NULL && name[0] != '\0') {
        uint32_t name_id = profile_string(p, name);
        if (name_id == NO_ID)
            return NO_ID;
        t->name = name_id;
    }
    return id;
}

/* ---------------------------------------------------------------------------
 * Stacks: keyed by (thread, frame ids root first).
 * ------------------------------------------------------------------------- */

struct stack_key {
    uint32_t thread;
    uint32_t depth;
    const uint32_t *frames;
};

static int stack_has_key(const struct profile *p, uint32_t id, const void *key)
{
    const struct stack_key *k = key;
    const struct profile_stack *s = &p->stacks[id];
    return s->thread == k->thread && s->depth == k->depth &&
           (k->depth == 0 ||
            memcmp(p->frame_pool + s->first, k->frames, k->depth * sizeof *k->frames) == 0);
}

static uint32_t stack_hash(const struct stack_key *k)
{
    uint64_t h = mix64(((uint64_t)k->thread << 32) | k->depth);
    for (uint32_t i = 0; i < k->depth; i++)
        h = (h ^ k->frames[i]) * 0x9e3779b97f4a7c15ULL + (h >> 29);
    return fold32(mix64(h));
}

/* Append a new stack (known to be absent) and return its id, or NO_ID. */
static uint32_t stack_insert(struct profile *p, const struct stack_key *key, uint32_t hash)
{
    size_t cap = p->stacks_cap;
    struct profile_stack *stacks = grow_array(p->stacks, sizeof *stacks, &cap,
                                              (size_t)p->nstacks + 1, MAX_ID);
    if (stacks == NULL)
        return NO_ID;
    p->stacks = stacks;
    p->stacks_cap = (uint32_t)cap;
    if (key->depth > SIZE_MAX - p->pool_len)
        return NO_ID;
    /* `first` is a uint32_t: the pool may not grow past what it can index. */
    uint32_t *pool = grow_array(p->frame_pool, sizeof *pool, &p->pool_cap,
                                p->pool_len + key->depth, UINT32_MAX);
    if (pool == NULL)
        return NO_ID;
    p->frame_pool = pool;
    if (hash_reserve_one(p->stack_index) != 0)
        return NO_ID;

    uint32_t id = p->nstacks++;
    p->stacks[id] = (struct profile_stack){
        .thread = key->thread,
        .depth = key->depth,
        .first = (uint32_t)p->pool_len,
        .count = 0,
    };
    if (key->depth > 0)
        memcpy(p->frame_pool + p->pool_len, key->frames, key->depth * sizeof *key->frames);
    p->pool_len += key->depth;
    hash_place(p->stack_index, hash, id);
    return id;
}

uint32_t profile_add(struct profile *p, uint32_t thread, const uint32_t *frames,
                     uint32_t depth, uint64_t count, uint64_t t_ns)
{
    if (thread >= p->nthreads || (depth > 0 && frames == NULL))
        return NO_ID;
    for (uint32_t i = 0; i < depth; i++)
        if (frames[i] >= p->nframes)
            return NO_ID;

    /* Will the timeline need a new run?  Reserve it before changing anything
     * so that a failure leaves the profile untouched. */
    struct stack_key key = { thread, depth, frames };
    uint32_t hash = stack_hash(&key);
    uint32_t id = hash_find(p, p->stack_index, hash, stack_has_key, &key);
    size_t last = p->thread_last_run[thread];
    int extends_run = last != 0 && id != NO_ID && p->runs[last - 1].stack == id;
    if (count > 0 && !extends_run && !p->no_timeline) {
        struct profile_run *runs = grow_array(p->runs, sizeof *runs, &p->runs_cap,
                                              p->nruns + 1, SIZE_MAX);
        if (runs == NULL)
            return NO_ID;
        p->runs = runs;
    }
    if (id == NO_ID) {
        id = stack_insert(p, &key, hash);
        if (id == NO_ID)
            return NO_ID;
    }

    p->stacks[id].count += count;
    p->threads[thread].samples += count;
    if (count == 0 || p->no_timeline)
        return id;
    if (extends_run) {
        struct profile_run *run = &p->runs[last - 1];
        run->count += count;
        if (t_ns > run->end_ns)
            run->end_ns = t_ns;
    } else {
        p->runs[p->nruns] = (struct profile_run){
            .thread = thread,
            .stack = id,
            .start_ns = t_ns,
            .end_ns = t_ns,
            .count = count,
        };
        p->thread_last_run[thread] = ++p->nruns;
    }
    return id;
}

uint64_t profile_total(const struct profile *p)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < p->nstacks; i++)
        total += p->stacks[i].count;
    return total;
}

/* ---------------------------------------------------------------------------
 * Labels.
 * ------------------------------------------------------------------------- */

void profile_frame_label(const struct profile *p, uint32_t frame, int full_filenames,
                         char *buf, size_t cap)
{
    if (cap == 0)
        return;
    if (frame >= p->nframes) {
        snprintf(buf, cap, "?");
        return;
    }
    const struct profile_frame *f = &p->frames[frame];
    const char *name = profile_str(p, f->name);
    const char *file = profile_str(p, full_filenames ? f->filename : f->short_file);
    if (file[0] == '\0')  /* fall back to whichever path we have */
        file = profile_str(p, full_filenames ? f->short_file : f->filename);

    if (f->kind == PROFILE_FRAME_SYNTH || file[0] == '\0')
        snprintf(buf, cap, "%s", name);
    else if (f->line == 0)
        snprintf(buf, cap, "%s (%s)", name, file);
    else
        snprintf(buf, cap, "%s (%s:%d)", name, file, (int)f->line);
}
