/*
 * store.h — the agent's records on disk: a queue, a writer thread, and the
 * SQLite database they go to.  The schema is documented at the top of
 * store.c (and in README.md, "Requests and queries").
 *
 * Owns: handing finished request records to a writer thread (the request
 * path only links a record into a list under a mutex), analysing them and
 * writing them in batches, one transaction per batch, into a SQLite file
 * that several processes write at once (WAL, busy timeout); staying correct
 * across fork() (the child starts with an empty queue and its own writer);
 * flushing at exit.  Pure C and pthreads: never calls Python, so the writer
 * never needs the GIL.
 */
#ifndef PYROMETER_AGENT_STORE_H
#define PYROMETER_AGENT_STORE_H

#include <stdint.h>

#include "record.h"

#define STORE_SCHEMA_VERSION 1
/* Records waiting beyond this are dropped (and counted), never blocking. */
#define STORE_QUEUE_MAX 20000u

struct store_config {
    const char *db_path;
    const char *service;
    uint32_t n_plus_one;    /* threshold for an N+1 finding (default 5) */
};

struct store_stats {
    uint64_t submitted, written, dropped, failed_batches;
    uint32_t queued;
};

/* Set where records go (copies the strings); may be called again before the
 * first record.  0 on success. */
int store_configure(const struct store_config *cfg);

/* A record to fill: a recycled one when the writer has some (no malloc,
 * no page faults on the request path), else a new one. */
struct agent_request *store_request_new(void);

/* Take ownership of a finished record; never blocks on I/O.  Starts the
 * writer thread on first use (in this process). */
void store_submit(struct agent_request *r);

/* Wait until every submitted record is written (or dropped), at most
 * timeout_ms.  Returns 1 when everything was written, 0 on timeout. */
int store_flush(int timeout_ms);

void store_get_stats(struct store_stats *out);

/* The SQL that creates the schema (for `pyrometer requests` and tests). */
extern const char store_schema_sql[];

#endif
