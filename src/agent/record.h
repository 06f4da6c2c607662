/*
 * record.h — what the in-process agent records about one request, and the
 * analysis of its queries.
 *
 * Owns: the request record (timings, route, status and every query with its
 * call site), the arena its strings live in, and request_analyze(), which
 * fingerprints each query and finds duplicates (same SQL and parameters),
 * similar queries (same fingerprint) and N+1 findings (the same fingerprint
 * from the same call site at least N times).  Pure C: no Python, no SQLite,
 * no locks.  The Python side builds a record while the request runs; the
 * analysis runs later on the writer thread, off the request path.
 */
#ifndef PYROMETER_AGENT_RECORD_H
#define PYROMETER_AGENT_RECORD_H

#include <stddef.h>
#include <stdint.h>

/* Strings of one record: freed all at once with it. */
struct arena_chunk;
struct arena {
    struct arena_chunk *head;
};

void *arena_alloc(struct arena *a, size_t n);
/* Copy n bytes and a NUL; NULL only when out of memory. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
void arena_free(struct arena *a);
/* Forget every string but keep the newest chunk for the next use. */
void arena_reset(struct arena *a);

/* Where a query came from: the innermost frame of the application's code. */
struct agent_site {
    const char *file;      /* NULL when no application frame was found */
    const char *function;
    int line;
};

struct agent_query {
    const char *sql;       /* as executed (arena) */
    size_t sql_len;
    const char *alias;     /* database alias / connection label (arena), may be NULL */
    const char *params;    /* repr of the parameters, only when capturing them */
    uint64_t params_hash;  /* hash of the parameter values (0: none) */
    int64_t offset_ns;     /* start, from the request's start */
    int64_t duration_ns;
    int64_t rows;          /* -1: unknown */
    struct agent_site site;
    uint8_t many;          /* executemany */
    uint8_t failed;        /* raised */
    /* filled by request_analyze */
    uint8_t duplicate;     /* same SQL and parameters as an earlier query */
    uint64_t fingerprint;
    const char *normalized;
};

struct agent_finding {
    uint64_t fingerprint;
    const char *normalized;
    struct agent_site site;
    uint32_t count;
    int64_t total_ns;
    uint32_t first_query;  /* index of the first query of the group */
    const char *example_params;   /* its parameters, when captured */
};

struct agent_request {
    struct agent_request *next;   /* the writer's queue */
    struct arena arena;
    const char *framework;        /* "django", "wsgi", ... */
    const char *method, *route, *view, *error;
    int status;                   /* 0: unknown */
    int pid, tid;
    int64_t start_unix_ns;
    int64_t start_mono_ns;
    int64_t latency_ns;
    int64_t cpu_ns;
    int64_t db_ns;
    int64_t agent_ns;             /* time spent in the agent's own code on the request path */
    struct agent_query *queries;
    uint32_t nqueries, queries_cap;
    /* filled by request_analyze */
    uint32_t duplicates, similar;
    struct agent_finding *findings;
    uint32_t nfindings;
};

struct agent_request *request_new(void);
void request_free(struct agent_request *r);
/* Empty a record for reuse, keeping its arena chunk and query array (unless
 * they grew large); the same as request_new() afterwards. */
void request_reset(struct agent_request *r);
/* A new zeroed query at the end (NULL when out of memory). */
struct agent_query *request_add_query(struct agent_request *r);

/* Fingerprint every query, mark duplicates, count similar ones and find
 * groups of at least n_plus_one (>= 2) queries with one fingerprint and one
 * call site (largest first).  0 on success, -1 when out of memory. */
int request_analyze(struct agent_request *r, uint32_t n_plus_one);

#endif
