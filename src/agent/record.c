/*
 * record.c — request records, their arena, and the analysis of their
 * queries (see record.h).  Sorting, not pairwise comparison, so a request
 * with thousands of queries costs n log n on the writer thread.
 */
#include "record.h"

#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"

/* ---- arena ---------------------------------------------------------------- */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
};

#define ARENA_CHUNK 4096u

void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    struct arena_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (c == NULL)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void arena_free(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

void arena_reset(struct arena *a)
{
    struct arena_chunk *keep = a->head;
    if (keep == NULL)
        return;
    struct arena_chunk *c = keep->next;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    if (keep->cap > 16 * ARENA_CHUNK) {   /* one huge query: do not keep it */
        free(keep);
        a->head = NULL;
        return;
    }
    keep->next = NULL;
    keep->used = 0;
}

/* ---- records ------------------------------------------------------------- */

#define KEEP_QUERIES 1024u

void request_reset(struct agent_request *r)
{
    struct arena arena = r->arena;
    struct agent_query *queries = r->queries;
    uint32_t cap = r->queries_cap;
    arena_reset(&arena);
    free(r->findings);
    if (cap > KEEP_QUERIES) {
        free(queries);
        queries = NULL;
        cap = 0;
    }
    memset(r, 0, sizeof *r);
    r->arena = arena;
    r->queries = queries;
    r->queries_cap = cap;
}

struct agent_request *request_new(void)
{
    return calloc(1, sizeof(struct agent_request));
}

void request_free(struct agent_request *r)
{
    if (r == NULL)
        return;
    arena_free(&r->arena);
    free(r->queries);
    free(r->findings);
    free(r);
}

struct agent_query *request_add_query(struct agent_request *r)
{
    if (r->nqueries == r->queries_cap) {
        uint32_t cap = r->queries_cap ? r->queries_cap * 2 : 16;
        struct agent_query *q = realloc(r->queries, cap * sizeof *q);
        if (q == NULL)
            return NULL;
        r->queries = q;
        r->queries_cap = cap;
    }
    struct agent_query *q = &r->queries[r->nqueries++];
    memset(q, 0, sizeof *q);
    q->rows = -1;
    return q;
}

/* ---- analysis ------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

struct keyed {
    uint64_t key;
    uint32_t index;
};

static int by_key_then_index(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int str_cmp(const char *a, const char *b)
{
    if (a == b)
        return 0;
    if (a == NULL)
        return -1;
    if (b == NULL)
        return 1;
    return strcmp(a, b);
}

static int site_cmp(const struct agent_site *a, const struct agent_site *b)
{
    int c = str_cmp(a->file, b->file);
    if (c)
        return c;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    return str_cmp(a->function, b->function);
}

/* qsort has no context argument: the queries being grouped. */
static _Thread_local const struct agent_query *sort_queries;

static int by_fingerprint_site(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    const struct agent_query *x = &sort_queries[i], *y = &sort_queries[j];
    if (x->fingerprint != y->fingerprint)
        return x->fingerprint < y->fingerprint ? -1 : 1;
    int c = site_cmp(&x->site, &y->site);
    if (c)
        return c;
    return i < j ? -1 : i > j;
}

static int by_count_desc(const void *a, const void *b)
{
    const struct agent_finding *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->first_query < y->first_query ? -1 : x->first_query > y->first_query;
}

/* Normalised texts are shared by fingerprint within a record. */
struct norm_table {
    uint64_t *keys;
    const char **texts;
    size_t cap;
};

static const char *norm_lookup(struct norm_table *t, uint64_t fp, int *found)
{
    size_t i = (size_t)mix(fp) & (t->cap - 1);
    while (t->keys[i] && t->keys[i] != fp)
        i = (i + 1) & (t->cap - 1);
    *found = t->keys[i] == fp;
    return *found ? t->texts[i] : NULL;
}

static void norm_insert(struct norm_table *t, uint64_t fp, const char *text)
{
    size_t i = (size_t)mix(fp) & (t->cap - 1);
    while (t->keys[i] && t->keys[i] != fp)
        i = (i + 1) & (t->cap - 1);
    t->keys[i] = fp;
    t->texts[i] = text;
}

/* Normalising is most of the analysis, and an application sends the same
 * few SQL texts over and over: the analysing thread remembers the
 * fingerprint of recent texts, keyed by the text itself (direct-mapped). */
#define TEXT_CACHE 4096u
struct text_entry {
    char *raw;            /* NULL: empty */
    size_t raw_len;
    uint64_t raw_hash;
    uint64_t fingerprint;
    char *normalized;
    size_t norm_len;
};
static _Thread_local struct text_entry *text_cache;

static const struct text_entry *text_cache_get(const char *sql, size_t len, uint64_t h)
{
    if (text_cache == NULL)
        return NULL;
    const struct text_entry *e = &text_cache[h & (TEXT_CACHE - 1)];
    if (e->raw && e->raw_hash == h && e->raw_len == len && memcmp(e->raw, sql, len) == 0)
        return e;
    return NULL;
}

static void text_cache_put(const char *sql, size_t len, uint64_t h, uint64_t fp,
                           const char *norm, size_t norm_len)
{
    if (text_cache == NULL && (text_cache = calloc(TEXT_CACHE, sizeof *text_cache)) == NULL)
        return;
    if (len > 8192)
        return;
    struct text_entry *e = &text_cache[h & (TEXT_CACHE - 1)];
    char *raw = malloc(len + 1), *n = malloc(norm_len + 1);
    if (raw == NULL || n == NULL) {
        free(raw);
        free(n);
        return;
    }
    free(e->raw);
    free(e->normalized);
    memcpy(raw, sql, len);
    raw[len] = '\0';
    memcpy(n, norm, norm_len);
    n[norm_len] = '\0';
    *e = (struct text_entry){raw, len, h, fp, n, norm_len};
}

static int fingerprint_queries(struct agent_request *r)
{
    struct norm_table t = {0};
    t.cap = 16;
    while (t.cap < 2 * (size_t)r->nqueries)
        t.cap *= 2;
    t.keys = calloc(t.cap, sizeof *t.keys);
    t.texts = calloc(t.cap, sizeof *t.texts);
    char stack_buf[4096];
    char *buf = stack_buf;
    size_t buf_cap = sizeof stack_buf;
    int rc = -1;
    if (t.keys == NULL || t.texts == NULL)
        goto out;
    for (uint32_t i = 0; i < r->nqueries; i++) {
        struct agent_query *q = &r->queries[i];
        const char *sql = q->sql ? q->sql : "";
        size_t sql_len = q->sql ? q->sql_len : 0;
        uint64_t raw_hash = hash_bytes(sql, sql_len);
        const struct text_entry *cached = text_cache_get(sql, sql_len, raw_hash);
        if (cached) {
            q->fingerprint = cached->fingerprint;
            int found;
            const char *text = norm_lookup(&t, q->fingerprint, &found);
            if (!found) {
                text = arena_strndup(&r->arena, cached->normalized, cached->norm_len);
                if (text == NULL)
                    goto out;
                norm_insert(&t, q->fingerprint, text);
            }
            q->normalized = text;
            continue;
        }
        size_t need = SQL_NORMALIZED_CAP(q->sql_len);
        if (need > buf_cap) {
            char *nb = malloc(need);
            if (nb == NULL)
                goto out;
            if (buf != stack_buf)
                free(buf);
            buf = nb;
            buf_cap = need;
        }
        size_t n;
        q->fingerprint = sql_fingerprint(sql, sql_len, buf, buf_cap, &n);
        text_cache_put(sql, sql_len, raw_hash, q->fingerprint, buf, n);
        int found;
        const char *text = norm_lookup(&t, q->fingerprint, &found);
        if (!found) {
            text = arena_strndup(&r->arena, buf, n);
            if (text == NULL)
                goto out;
            norm_insert(&t, q->fingerprint, text);
        }
        q->normalized = text;
    }
    rc = 0;
out:
    if (buf != stack_buf)
        free(buf);
    free(t.keys);
    free(t.texts);
    return rc;
}

int request_analyze(struct agent_request *r, uint32_t n_plus_one)
{
    uint32_t n = r->nqueries;
    r->duplicates = r->similar = 0;
    r->nfindings = 0;
    if (n_plus_one < 2)
        n_plus_one = 2;
    if (fingerprint_queries(r) != 0)
        return -1;
    if (n == 0)
        return 0;
    struct keyed *keys = malloc(n * sizeof *keys);
    uint32_t *order = malloc(n * sizeof *order);
    if (keys == NULL || order == NULL) {
        free(keys);
        free(order);
        return -1;
    }
    /* Duplicates: same text as executed and same parameters. */
    for (uint32_t i = 0; i < n; i++) {
        const struct agent_query *q = &r->queries[i];
        uint64_t key = hash_bytes(q->sql ? q->sql : "", q->sql ? q->sql_len : 0) ^ mix(q->params_hash);
        /* executemany never counts as a duplicate: its parameters are a batch */
        keys[i].key = q->many ? mix(key ^ (0x9e3779b97f4a7c15ull * (i + 1))) : key;
        keys[i].index = i;
    }
    qsort(keys, n, sizeof *keys, by_key_then_index);
    for (uint32_t i = 1; i < n; i++)
        if (keys[i].key == keys[i - 1].key && !r->queries[keys[i].index].many) {
            r->queries[keys[i].index].duplicate = 1;
            r->duplicates++;
        }
    /* Similar: same fingerprint.  N+1: same fingerprint and call site. */
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    sort_queries = r->queries;
    qsort(order, n, sizeof *order, by_fingerprint_site);
    uint32_t distinct = 0;
    for (uint32_t i = 0; i < n; i++)
        if (i == 0 || r->queries[order[i]].fingerprint != r->queries[order[i - 1]].fingerprint)
            distinct++;
    r->similar = n - distinct;
    for (uint32_t i = 0; i < n;) {
        uint32_t j = i + 1;
        const struct agent_query *first = &r->queries[order[i]];
        int64_t total = first->duration_ns;
        while (j < n && r->queries[order[j]].fingerprint == first->fingerprint &&
               site_cmp(&r->queries[order[j]].site, &first->site) == 0) {
            total += r->queries[order[j]].duration_ns;
            j++;
        }
        if (j - i >= n_plus_one) {
            struct agent_finding *f = realloc(r->findings, (r->nfindings + 1) * sizeof *f);
            if (f == NULL) {
                free(keys);
                free(order);
                return -1;
            }
            r->findings = f;
            f = &r->findings[r->nfindings++];
            f->fingerprint = first->fingerprint;
            f->normalized = first->normalized;
            f->site = first->site;
            f->count = j - i;
            f->total_ns = total;
            f->first_query = order[i];
            f->example_params = first->params;
        }
        i = j;
    }
    if (r->nfindings > 1)
        qsort(r->findings, r->nfindings, sizeof *r->findings, by_count_desc);
    free(keys);
    free(order);
    return 0;
}
