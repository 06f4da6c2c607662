/*
 * store.c — the writer thread and the SQLite database of request records.
 *
 * The request path calls store_submit(), which links the record into a list
 * under a mutex and signals a condition: no I/O, no analysis, no Python.
 * One writer thread per process (started on the first record, restarted in
 * a forked child) takes the whole list, analyses each record
 * (record.c: fingerprints, duplicates, N+1) and writes the batch in one
 * transaction.  SQLite calls happen only while `writing` is set, and fork()
 * waits for that to clear, so a child never inherits SQLite mid-call.
 * Several processes (gunicorn workers) share one file: WAL journal, a busy
 * timeout of 10 s, BEGIN IMMEDIATE so two writers never deadlock upgrading
 * their locks; a batch that still cannot be written is retried, then dropped
 * and counted.  Parameter values reach the file only when the agent was
 * asked to capture them (the Python side leaves `params` NULL otherwise);
 * SQL text is stored normalised (literals replaced), once per fingerprint.
 *
 * Schema (version 1; `meta` holds schema_version and service):
 *
 *   meta(key TEXT PRIMARY KEY, value TEXT)
 *   requests(id INTEGER PRIMARY KEY, pid, thread_id (OS thread id),
 *            framework ('django' | 'wsgi'), method, route (URL pattern),
 *            view (dotted name of the view), status (HTTP status, 0 unknown),
 *            start_ns (Unix time), latency_ns, cpu_ns (the thread's CPU time),
 *            query_count, db_ns (sum of query durations), duplicate_count
 *            (queries repeating an earlier one's SQL and parameters),
 *            similar_count (queries repeating an earlier one's fingerprint),
 *            n_plus_one_count (findings), error (exception type, or NULL),
 *            agent_ns (time spent in the agent's own code during the request,
 *            on the request's thread: what the agent cost this request))
 *   fingerprints(fingerprint TEXT PRIMARY KEY (16 hex digits), sql (normalised))
 *   queries(request_id (no index: append-only, cheapest to write), seq
 *           (0-based order in the request), db_alias,
 *           fingerprint, offset_ns (from the request's start), duration_ns,
 *           rows (NULL when unknown), many (executemany), duplicate, failed,
 *           file, line, function (the call site: innermost application
 *           frame; NULL when none), params (NULL unless captured))
 *   findings(request_id, kind ('n_plus_one'), fingerprint, file, line,
 *            function, count, total_ns, example_seq (first query's seq),
 *            example_params (its parameters, NULL unless captured))
 */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

const char store_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS requests(\n"
    "  id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, thread_id INTEGER NOT NULL,\n"
    "  framework TEXT NOT NULL, method TEXT, route TEXT, view TEXT, status INTEGER NOT NULL,\n"
    "  start_ns INTEGER NOT NULL, latency_ns INTEGER NOT NULL, cpu_ns INTEGER NOT NULL,\n"
    "  query_count INTEGER NOT NULL, db_ns INTEGER NOT NULL, duplicate_count INTEGER NOT NULL,\n"
    "  similar_count INTEGER NOT NULL, n_plus_one_count INTEGER NOT NULL, error TEXT,\n"
    "  agent_ns INTEGER NOT NULL);\n"
    "CREATE INDEX IF NOT EXISTS requests_route ON requests(route, method);\n"
    "CREATE TABLE IF NOT EXISTS fingerprints(fingerprint TEXT PRIMARY KEY, sql TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS queries(\n"
    "  request_id INTEGER NOT NULL, seq INTEGER NOT NULL, db_alias TEXT,\n"
    "  fingerprint TEXT NOT NULL, offset_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,\n"
    "  rows INTEGER, many INTEGER NOT NULL, duplicate INTEGER NOT NULL, failed INTEGER NOT NULL,\n"
    "  file TEXT, line INTEGER, function TEXT, params TEXT);\n"
    "CREATE TABLE IF NOT EXISTS findings(\n"
    "  request_id INTEGER NOT NULL, kind TEXT NOT NULL, fingerprint TEXT NOT NULL,\n"
    "  file TEXT, line INTEGER, function TEXT, count INTEGER NOT NULL,\n"
    "  total_ns INTEGER NOT NULL, example_seq INTEGER NOT NULL, example_params TEXT);\n"
    "CREATE INDEX IF NOT EXISTS findings_request ON findings(request_id);\n";

#define BUSY_TIMEOUT_MS 10000
#define BATCH_RETRIES 5
/* A batch is written when it holds BATCH_RECORDS records, when its first
 * record has waited BATCH_DELAY_MS, or at once on store_flush(): one
 * transaction (and one wake-up of the writer) per batch, not per request. */
#define BATCH_RECORDS 256u
#define BATCH_DELAY_MS 100

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;   /* records queued */
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;   /* a batch finished */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* Under `lock`. */
static struct agent_request *queue_head, *queue_tail;
static uint32_t queue_len;
static int writer_started;
static int writing;
static int flush_wanted;
/* Written records, emptied, for store_request_new(). */
#define RECYCLE_MAX 1024u
static struct agent_request *recycled;
static uint32_t recycled_len;
static struct store_stats stats;
static char *db_path, *service;
static uint32_t n_plus_one = 5;

/* Writer thread only (and only while `writing`). */
static sqlite3 *db;
static sqlite3_stmt *ins_request, *ins_fingerprint, *ins_query, *ins_finding;
static int reported_error;
/* Fingerprints already in the file (written by this process). */
static uint64_t *known_fp;
static size_t known_cap, known_len;

/* ---- fork --------------------------------------------------------------- */

static void before_fork(void)
{
    pthread_mutex_lock(&lock);
    while (writing)
        pthread_cond_wait(&idle, &lock);
}

static void after_fork_parent(void)
{
    pthread_mutex_unlock(&lock);
}

/* The child: one thread, our lock held by it.  The parent's queue and its
 * database handle belong to the parent; start afresh. */
static void after_fork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&work, NULL);
    pthread_cond_init(&idle, NULL);
    struct agent_request *r = queue_head;
    while (r) {
        struct agent_request *next = r->next;
        request_free(r);
        r = next;
    }
    queue_head = queue_tail = NULL;
    queue_len = 0;
    writer_started = 0;
    writing = 0;
    flush_wanted = 0;
    memset(&stats, 0, sizeof stats);
    db = NULL;   /* never used across fork (SQLite's rule); not closed */
    ins_request = ins_fingerprint = ins_query = ins_finding = NULL;
    reported_error = 0;
}

static void install_fork_handlers(void)
{
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

int store_configure(const struct store_config *cfg)
{
    pthread_once(&fork_once, install_fork_handlers);
    pthread_mutex_lock(&lock);
    char *p = strdup(cfg->db_path ? cfg->db_path : "pyrometer.db");
    char *s = strdup(cfg->service ? cfg->service : "");
    if (p == NULL || s == NULL) {
        free(p);
        free(s);
        pthread_mutex_unlock(&lock);
        return -1;
    }
    free(db_path);
    free(service);
    db_path = p;
    service = s;
    n_plus_one = cfg->n_plus_one >= 2 ? cfg->n_plus_one : 5;
    pthread_mutex_unlock(&lock);
    return 0;
}

/* ---- the database --------------------------------------------------------- */

static void report_once(const char *what, const char *detail)
{
    if (reported_error)
        return;
    reported_error = 1;
    fprintf(stderr, "pyrometer agent: %s %s: %s (records are being dropped)\n", what,
            db_path ? db_path : "?", detail);
}

static void close_db(void)
{
    sqlite3_finalize(ins_request);
    sqlite3_finalize(ins_fingerprint);
    sqlite3_finalize(ins_query);
    sqlite3_finalize(ins_finding);
    ins_request = ins_fingerprint = ins_query = ins_finding = NULL;
    if (db)
        sqlite3_close(db);
    db = NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* PRAGMA journal_mode=WAL wants a moment alone with the file: retry. */
static int exec_retry(const char *sql)
{
    int rc = SQLITE_ERROR;
    for (int i = 0; i < 50; i++) {
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            break;
        sleep_ms(20);
    }
    return rc;
}

static int open_db(void)
{
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        report_once("cannot open", db ? sqlite3_errmsg(db) : "out of memory");
        close_db();
        return -1;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    char meta[512];
    char *svc = sqlite3_mprintf("%Q", service);
    snprintf(meta, sizeof meta,
             "INSERT OR IGNORE INTO meta VALUES('schema_version', '%d');"
             "INSERT OR IGNORE INTO meta VALUES('service', %s);",
             STORE_SCHEMA_VERSION, svc ? svc : "''");
    sqlite3_free(svc);
    if (exec_retry("PRAGMA journal_mode=WAL") != SQLITE_OK ||
        exec_retry("PRAGMA synchronous=NORMAL") != SQLITE_OK ||
        exec_retry("BEGIN IMMEDIATE") != SQLITE_OK) {
        report_once("cannot set up", sqlite3_errmsg(db));
        close_db();
        return -1;
    }
    if (sqlite3_exec(db, store_schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, meta, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        report_once("cannot create the schema in", sqlite3_errmsg(db));
        close_db();
        return -1;
    }
    static const char insert_request[] =
        "INSERT INTO requests(pid, thread_id, framework, method, route, view, status, start_ns,"
        " latency_ns, cpu_ns, query_count, db_ns, duplicate_count, similar_count,"
        " n_plus_one_count, error, agent_ns) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    static const char insert_fingerprint[] =
        "INSERT OR IGNORE INTO fingerprints(fingerprint, sql) VALUES(?,?)";
    static const char insert_query[] =
        "INSERT INTO queries(request_id, seq, db_alias, fingerprint, offset_ns, duration_ns,"
        " rows, many, duplicate, failed, file, line, function, params)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    static const char insert_finding[] =
        "INSERT INTO findings(request_id, kind, fingerprint, file, line, function, count,"
        " total_ns, example_seq, example_params) VALUES(?,?,?,?,?,?,?,?,?,?)";
    const char *const sql[4] = {insert_request, insert_fingerprint, insert_query, insert_finding};
    sqlite3_stmt **stmts[4] = {&ins_request, &ins_fingerprint, &ins_query, &ins_finding};
    for (int i = 0; i < 4; i++)
        if (sqlite3_prepare_v2(db, sql[i], -1, stmts[i], NULL) != SQLITE_OK) {
            report_once("cannot prepare statements for", sqlite3_errmsg(db));
            close_db();
            return -1;
        }
    return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);   /* every parameter is bound before each step */
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void fp_hex(uint64_t fp, char out[17])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, fp >>= 4)
        out[i] = digits[fp & 15];
    out[16] = '\0';
}

static int fp_known(uint64_t fp)
{
    if (known_cap == 0)
        return 0;
    size_t i = (size_t)(fp * 0x9e3779b97f4a7c15ull >> 20) & (known_cap - 1);
    while (known_fp[i]) {
        if (known_fp[i] == fp)
            return 1;
        i = (i + 1) & (known_cap - 1);
    }
    return 0;
}

static void fp_remember(uint64_t fp)
{
    if (fp_known(fp))
        return;
    if (2 * (known_len + 1) > known_cap) {
        size_t cap = known_cap ? known_cap * 2 : 1024;
        if (cap > (1u << 22))
            return;   /* plenty; INSERT OR IGNORE copes with the rest */
        uint64_t *fresh = calloc(cap, sizeof *fresh);
        if (fresh == NULL)
            return;
        uint64_t *old = known_fp;
        size_t old_cap = known_cap;
        known_fp = fresh;
        known_cap = cap;
        known_len = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i])
                fp_remember(old[i]);
        free(old);
    }
    size_t i = (size_t)(fp * 0x9e3779b97f4a7c15ull >> 20) & (known_cap - 1);
    while (known_fp[i])
        i = (i + 1) & (known_cap - 1);
    known_fp[i] = fp;
    known_len++;
}

static int write_request(struct agent_request *r)
{
    sqlite3_stmt *st = ins_request;
    sqlite3_bind_int(st, 1, r->pid);
    sqlite3_bind_int(st, 2, r->tid);
    bind_text(st, 3, r->framework ? r->framework : "unknown");
    bind_text(st, 4, r->method);
    bind_text(st, 5, r->route);
    bind_text(st, 6, r->view);
    sqlite3_bind_int(st, 7, r->status);
    sqlite3_bind_int64(st, 8, r->start_unix_ns);
    sqlite3_bind_int64(st, 9, r->latency_ns);
    sqlite3_bind_int64(st, 10, r->cpu_ns);
    sqlite3_bind_int(st, 11, (int)r->nqueries);
    sqlite3_bind_int64(st, 12, r->db_ns);
    sqlite3_bind_int(st, 13, (int)r->duplicates);
    sqlite3_bind_int(st, 14, (int)r->similar);
    sqlite3_bind_int(st, 15, (int)r->nfindings);
    bind_text(st, 16, r->error);
    sqlite3_bind_int64(st, 17, r->agent_ns);
    if (step(st) != 0)
        return -1;
    sqlite3_int64 id = sqlite3_last_insert_rowid(db);
    char hex[17];
    for (uint32_t i = 0; i < r->nqueries; i++) {
        const struct agent_query *q = &r->queries[i];
        fp_hex(q->fingerprint, hex);
        if (!fp_known(q->fingerprint)) {
            sqlite3_bind_text(ins_fingerprint, 1, hex, 16, SQLITE_TRANSIENT);
            bind_text(ins_fingerprint, 2, q->normalized ? q->normalized : "");
            if (step(ins_fingerprint) != 0)
                return -1;
        }
        st = ins_query;
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int(st, 2, (int)i);
        bind_text(st, 3, q->alias);
        sqlite3_bind_text(st, 4, hex, 16, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 5, q->offset_ns);
        sqlite3_bind_int64(st, 6, q->duration_ns);
        if (q->rows >= 0)
            sqlite3_bind_int64(st, 7, q->rows);
        else
            sqlite3_bind_null(st, 7);
        sqlite3_bind_int(st, 8, q->many);
        sqlite3_bind_int(st, 9, q->duplicate);
        sqlite3_bind_int(st, 10, q->failed);
        bind_text(st, 11, q->site.file);
        if (q->site.file)
            sqlite3_bind_int(st, 12, q->site.line);
        else
            sqlite3_bind_null(st, 12);
        bind_text(st, 13, q->site.function);
        bind_text(st, 14, q->params);
        if (step(st) != 0)
            return -1;
    }
    for (uint32_t i = 0; i < r->nfindings; i++) {
        const struct agent_finding *f = &r->findings[i];
        st = ins_finding;
        fp_hex(f->fingerprint, hex);
        sqlite3_bind_int64(st, 1, id);
        bind_text(st, 2, "n_plus_one");
        sqlite3_bind_text(st, 3, hex, 16, SQLITE_TRANSIENT);
        bind_text(st, 4, f->site.file);
        if (f->site.file)
            sqlite3_bind_int(st, 5, f->site.line);
        else
            sqlite3_bind_null(st, 5);
        bind_text(st, 6, f->site.function);
        sqlite3_bind_int(st, 7, (int)f->count);
        sqlite3_bind_int64(st, 8, f->total_ns);
        sqlite3_bind_int(st, 9, (int)f->first_query);
        bind_text(st, 10, f->example_params);
        if (step(st) != 0)
            return -1;
    }
    return 0;
}

/* One transaction for the whole batch.  0 written, -1 to retry. */
static int write_batch(struct agent_request *list)
{
    if (db == NULL && open_db() != 0)
        return -1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    for (struct agent_request *r = list; r; r = r->next)
        if (write_request(r) != 0) {
            report_once("cannot write to", sqlite3_errmsg(db));
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    for (struct agent_request *r = list; r; r = r->next)
        for (uint32_t i = 0; i < r->nqueries; i++)
            fp_remember(r->queries[i].fingerprint);
    return 0;
}

static void *writer_main(void *arg)
{
    (void)arg;
    /* The lowest priority (Linux: nice is per thread): on a busy machine the
     * application's own threads run first; the queue absorbs the delay. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    pthread_mutex_lock(&lock);
    for (;;) {
        while (queue_head == NULL)
            pthread_cond_wait(&work, &lock);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += BATCH_DELAY_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (queue_len < BATCH_RECORDS && !flush_wanted &&
               pthread_cond_timedwait(&work, &lock, &deadline) == 0) {
        }
        flush_wanted = 0;
        struct agent_request *list = queue_head;
        uint32_t n = queue_len;
        queue_head = queue_tail = NULL;
        queue_len = 0;
        writing = 1;
        uint32_t threshold = n_plus_one;
        pthread_mutex_unlock(&lock);

        for (struct agent_request *r = list; r; r = r->next)
            request_analyze(r, threshold);
        int ok = 0;
        for (int attempt = 0; attempt < BATCH_RETRIES && !ok; attempt++) {
            ok = write_batch(list) == 0;
            if (!ok)
                sleep_ms(100 << attempt);
        }
        struct agent_request *keep = NULL;
        uint32_t kept = 0, room = RECYCLE_MAX > recycled_len ? RECYCLE_MAX - recycled_len : 0;
        struct agent_request *keep_tail = NULL;
        while (list) {
            struct agent_request *next = list->next;
            if (kept < room) {
                request_reset(list);
                list->next = keep;
                if (keep == NULL)
                    keep_tail = list;
                keep = list;
                kept++;
            } else {
                request_free(list);
            }
            list = next;
        }

        pthread_mutex_lock(&lock);
        if (keep) {
            keep_tail->next = recycled;
            recycled = keep;
            recycled_len += kept;
        }
        writing = 0;
        if (ok) {
            stats.written += n;
        } else {
            stats.dropped += n;
            stats.failed_batches++;
        }
        pthread_cond_broadcast(&idle);
    }
    return NULL;
}

/* Under `lock`. */
static void start_writer(void)
{
    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* signals stay with Python's threads */
    if (pthread_create(&thread, &attr, writer_main, NULL) == 0) {
        writer_started = 1;
#ifdef __GLIBC__
        pthread_setname_np(thread, "pyrometer-wr");
#endif
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

struct agent_request *store_request_new(void)
{
    struct agent_request *r = NULL;
    pthread_mutex_lock(&lock);
    if (recycled) {
        r = recycled;
        recycled = r->next;
        recycled_len--;
        r->next = NULL;
    }
    pthread_mutex_unlock(&lock);
    return r ? r : request_new();
}

void store_submit(struct agent_request *r)
{
    pthread_once(&fork_once, install_fork_handlers);
    pthread_mutex_lock(&lock);
    stats.submitted++;
    if (!writer_started)
        start_writer();
    if (!writer_started || queue_len >= STORE_QUEUE_MAX) {
        stats.dropped++;
        pthread_mutex_unlock(&lock);
        request_free(r);
        return;
    }
    r->next = NULL;
    if (queue_tail)
        queue_tail->next = r;
    else
        queue_head = r;
    queue_tail = r;
    queue_len++;
    if (queue_len == 1 || queue_len == BATCH_RECORDS)   /* wake the writer only when it matters */
        pthread_cond_signal(&work);
    pthread_mutex_unlock(&lock);
}

int store_flush(int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lock);
    int rc = 0;
    if (queue_head != NULL) {
        flush_wanted = 1;
        pthread_cond_signal(&work);
    }
    while ((queue_head != NULL || writing) && rc == 0)
        rc = pthread_cond_timedwait(&idle, &lock, &deadline);
    int done = queue_head == NULL && !writing;
    pthread_mutex_unlock(&lock);
    return done;
}

void store_get_stats(struct store_stats *out)
{
    pthread_mutex_lock(&lock);
    *out = stats;
    out->queued = queue_len;
    pthread_mutex_unlock(&lock);
}
