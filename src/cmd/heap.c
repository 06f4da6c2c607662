/*
 * heap.c — `pyrometer heap -p PID [--diff SECONDS] [--json]`: a census of
 * the live GC-tracked objects of a running Python by type (count and
 * shallow size, largest first), the process's RSS, and with --diff a
 * second census SECONDS later with the types that grew and the RSS trend
 * in between.
 *
 * Owns: options, the wait between the two censuses (RSS sampled meanwhile;
 * Ctrl-C ends the wait early), progress on a TTY, the text table and the
 * JSON document (described in README.md, "Heap census").  The census itself
 * is python/heap.c.  Runs no code in the target; stops its threads while a
 * census is taken (a consistent snapshot of lists it mutates all the time),
 * never longer, and not at all with --nonblocking.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../python/heap.h"
#include "../target/proc.h"
#include "cmd.h"

#define DEFAULT_ROWS 25
#define RSS_SAMPLES_MAX 4096u
#define RSS_EVERY_NS 250000000L

struct heap_opts {
    pid_t pid;
    double diff;          /* seconds between the censuses; 0: one census */
    int json;
    int nonblocking;      /* count while the target runs */
    long rows;            /* text rows shown per table; 0: all */
    uint64_t max_copy;    /* bytes */
    uint64_t max_objects;
};

static void heap_usage(FILE *out)
{
    fprintf(out,
            "usage: pyrometer heap [options] -p PID\n\n"
            "Counts the live objects the garbage collector tracks in a running Python, by\n"
            "type (count and shallow size), without running code in it.\n\n"
            "  -p, --pid PID          the Python process\n"
            "  -d, --diff SECONDS     take a second census SECONDS later and show the types\n"
            "                         that grew and the RSS trend (Ctrl-C: take it now)\n"
            "  -j, --json             JSON (see README.md, \"Heap census\")\n"
            "  -n, --top N            rows per table in text output (default %d, 0: all)\n"
            "      --nonblocking      never stop the target (by default its threads are\n"
            "                         stopped while a census is taken, about 0.1 s per\n"
            "                         100 000 objects); a busy target may then change its\n"
            "                         lists too fast to be counted\n"
            "      --max-copy MIB     copy at most this much of the target's memory per\n"
            "                         census (default %llu)\n"
            "      --max-objects N    refuse a GC list longer than N (default %llu)\n"
            "  -h, --help             this text\n",
            DEFAULT_ROWS, (unsigned long long)(HEAP_DEFAULT_MAX_COPY >> 20),
            (unsigned long long)HEAP_DEFAULT_MAX_OBJECTS);
}

static int parse_count(const char *s, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_heap_args(int argc, char **argv, struct heap_opts *o)
{
    static const struct option longopts[] = {
        {"pid", required_argument, 0, 'p'},       {"diff", required_argument, 0, 'd'},
        {"json", no_argument, 0, 'j'},            {"top", required_argument, 0, 'n'},
        {"nonblocking", no_argument, 0, 'B'},        {"max-copy", required_argument, 0, 'M'},
        {"max-objects", required_argument, 0, 'O'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->rows = DEFAULT_ROWS;
    o->max_copy = HEAP_DEFAULT_MAX_COPY;
    o->max_objects = HEAP_DEFAULT_MAX_OBJECTS;
    optind = 1;
    opterr = 0;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "+p:d:jn:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (cmd_parse_pid(optarg, &o->pid) != 0)
                return cmd_usage_error("heap", "invalid PID '%s'", optarg);
            break;
        case 'd':
            if (cmd_parse_positive(optarg, &o->diff) != 0 || o->diff > 86400 * 7)
                return cmd_usage_error("heap", "invalid --diff '%s' (seconds, > 0)", optarg);
            break;
        case 'j': o->json = 1; break;
        case 'B': o->nonblocking = 1; break;
        case 'n':
            if (parse_count(optarg, 1000000000L, &o->rows) != 0)
                return cmd_usage_error("heap", "invalid --top '%s'", optarg);
            break;
        case 'M':
            if (parse_count(optarg, 1L << 30, &v) != 0 || v == 0)
                return cmd_usage_error("heap", "invalid --max-copy '%s' (MiB, > 0)", optarg);
            o->max_copy = (uint64_t)v << 20;
            break;
        case 'O':
            if (parse_count(optarg, 1L << 40, &v) != 0 || v == 0)
                return cmd_usage_error("heap", "invalid --max-objects '%s'", optarg);
            o->max_objects = (uint64_t)v;
            break;
        case 'h': heap_usage(stdout); return -2;
        case ':':
            return cmd_usage_error("heap", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cmd_usage_error("heap", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cmd_usage_error("heap", "unexpected argument '%s'", argv[optind]);
    if (!o->pid)
        return cmd_usage_error("heap", "give -p PID");
    return 0;
}

/* ---- one census, timed ---------------------------------------------------- */

struct timed_census {
    struct heap_census census;
    double started;       /* wall clock, seconds since the epoch */
    double mono;          /* monotonic start */
    double seconds;       /* how long it took */
    uint64_t rss;         /* RSS just after it, 0 if unknown */
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct progress {
    int tty;
    int shown;
    const char *label;
};

static void show_progress(void *ctx, uint64_t objects, uint64_t copied)
{
    struct progress *p = ctx;
    if (!p->tty)
        return;
    fprintf(stderr, "\r\033[Kpyrometer: %s: %llu objects, %.1f MiB copied", p->label,
            (unsigned long long)objects, (double)copied / (1 << 20));
    p->shown = 1;
}

static void clear_progress(struct progress *p)
{
    if (p->shown)
        fprintf(stderr, "\r\033[K");
    p->shown = 0;
}

static int take_census(struct py_process *py, const struct heap_opts *o, const char *label,
                       struct timed_census *tc, struct pm_error *err)
{
    struct progress p = {.tty = isatty(STDERR_FILENO), .label = label};
    struct heap_options ho = {.max_copy = o->max_copy, .max_objects = o->max_objects,
                              .blocking = !o->nonblocking, .progress = show_progress,
                              .progress_ctx = &p};
    show_progress(&p, 0, 0);
    tc->started = now_wall();
    tc->mono = now_mono();
    int rc = heap_census_process(py, &ho, &tc->census, err);
    tc->seconds = now_mono() - tc->mono;
    clear_progress(&p);
    if (rc != 0 && err->code == PM_ETORN && o->nonblocking) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%.400s (without --nonblocking the target is stopped while "
                 "it is counted)", err->msg);
        memcpy(err->msg, msg, sizeof msg);
    }
    if (rc == 0 && (tc->census.relinks || tc->census.retries))
        fprintf(stderr, "pyrometer: warning: %s: the target changed its object lists while they "
                        "were read (%llu links re-read, %u lists read again): the counts may be "
                        "far off; without --nonblocking the target is stopped while it is "
                        "counted\n",
                label, (unsigned long long)tc->census.relinks, tc->census.retries);
    tc->rss = 0;
    if (rc == 0 && proc_rss(o->pid, &tc->rss) != 0 && !proc_is_alive(o->pid))
        return pm_fail(err, PM_EGONE, "process %d has exited", (int)o->pid);
    return rc;
}

/* ---- RSS between the censuses ----------------------------------------------- */

struct rss_trend {
    size_t n;
    double t[RSS_SAMPLES_MAX];      /* seconds after the first census started */
    uint64_t bytes[RSS_SAMPLES_MAX];
};

static void rss_add(struct rss_trend *tr, double t, uint64_t bytes)
{
    if (tr->n < RSS_SAMPLES_MAX) {
        tr->t[tr->n] = t;
        tr->bytes[tr->n++] = bytes;
    } else {
        /* keep the last one current */
        tr->t[tr->n - 1] = t;
        tr->bytes[tr->n - 1] = bytes;
    }
}

static volatile sig_atomic_t stop_waiting;

/* Sleep until `deadline` (monotonic), sampling RSS; Ctrl-C ends it early. */
static void wait_sampling(pid_t pid, double origin, double deadline, struct rss_trend *tr)
{
    while (!stop_waiting) {
        double now = now_mono();
        if (now >= deadline)
            break;
        double left = deadline - now;
        long ns = left * 1e9 < RSS_EVERY_NS ? (long)(left * 1e9) : RSS_EVERY_NS;
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
        uint64_t rss;
        if (proc_rss(pid, &rss) == 0)
            rss_add(tr, now_mono() - origin, rss);
        else if (!proc_is_alive(pid))
            break;
    }
}

/* ---- text ------------------------------------------------------------------- */

static void human(uint64_t bytes, char *out, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, cap, "%.1f %s", v, units[u]);
}

static void human_signed(int64_t bytes, char *out, size_t cap)
{
    char h[24];
    human(bytes < 0 ? (uint64_t)0 - (uint64_t)bytes : (uint64_t)bytes, h, sizeof h);
    snprintf(out, cap, "%s%s", bytes < 0 ? "-" : "+", h);
}

static void print_header(const struct heap_opts *o, struct py_process *py)
{
    char cmdline[1024];
    proc_cmdline(o->pid, cmdline, sizeof cmdline);
    printf("Process %d: %s\n", (int)o->pid, cmdline);
    printf("Python v%s (%s)\n", py_get_version(py)->text, py_binary(py));
}

static void print_summary(const char *label, const struct timed_census *tc)
{
    const struct heap_census *c = &tc->census;
    char size[32], rss[32];
    human(c->size, size, sizeof size);
    human(tc->rss, rss, sizeof rss);
    printf("%s: %llu objects of %zu types, %llu bytes (%s) shallow; RSS %s; took %.3f s%s\n",
           label, (unsigned long long)c->objects, c->ntypes, (unsigned long long)c->size, size,
           rss, tc->seconds, c->paused ? "" : " (target running)");
    if (c->unreadable)
        printf("  (%llu objects whose type could not be read are counted without a size)\n",
               (unsigned long long)c->unreadable);
}

static void print_table(const struct heap_census *c, long rows)
{
    printf("\n%12s %14s  %s\n", "count", "bytes", "type");
    size_t shown = rows == 0 || (size_t)rows > c->ntypes ? c->ntypes : (size_t)rows;
    for (size_t i = 0; i < shown; i++)
        printf("%12llu %14llu  %s\n", (unsigned long long)c->types[i].count,
               (unsigned long long)c->types[i].size, c->types[i].name);
    if (shown < c->ntypes) {
        uint64_t count = 0, size = 0;
        for (size_t i = shown; i < c->ntypes; i++) {
            count += c->types[i].count;
            size += c->types[i].size;
        }
        printf("%12llu %14llu  (%zu more types; --top 0 shows all)\n", (unsigned long long)count,
               (unsigned long long)size, c->ntypes - shown);
    }
}

static void print_growth(const struct heap_growth *g, size_t n, long rows)
{
    if (n == 0) {
        printf("\nNo type grew.\n");
        return;
    }
    printf("\nTypes that grew:\n%12s %14s %12s %14s  %s\n", "+count", "+bytes", "count", "bytes",
           "type");
    size_t shown = rows == 0 || (size_t)rows > n ? n : (size_t)rows;
    for (size_t i = 0; i < shown; i++)
        printf("%+12lld %+14lld %12llu %14llu  %s\n", (long long)g[i].count_delta,
               (long long)g[i].size_delta, (unsigned long long)g[i].count_after,
               (unsigned long long)g[i].size_after, g[i].name);
    if (shown < n)
        printf("(%zu more types grew; --top 0 shows all)\n", n - shown);
}

static void print_rss_trend(const struct timed_census *a, const struct timed_census *b,
                            const struct rss_trend *tr)
{
    double interval = b->mono - a->mono;
    int64_t delta = (int64_t)b->rss - (int64_t)a->rss;
    uint64_t lo = a->rss, hi = a->rss;
    for (size_t i = 0; i < tr->n; i++) {
        lo = tr->bytes[i] < lo ? tr->bytes[i] : lo;
        hi = tr->bytes[i] > hi ? tr->bytes[i] : hi;
    }
    char from[32], to[32], d[32], rate[32], low[32], high[32];
    human(a->rss, from, sizeof from);
    human(b->rss, to, sizeof to);
    human_signed(delta, d, sizeof d);
    human_signed(interval > 0 ? (int64_t)llround((double)delta / interval) : 0, rate,
                 sizeof rate);
    human(lo, low, sizeof low);
    human(hi, high, sizeof high);
    printf("RSS: %s -> %s (%s over %.1f s, %s/s; between %s and %s)\n", from, to, d, interval,
           rate, low, high);
}

/* ---- JSON ------------------------------------------------------------------- */

static json_t *census_json(const struct timed_census *tc)
{
    const struct heap_census *c = &tc->census;
    json_t *types = json_array();
    for (size_t i = 0; i < c->ntypes; i++)
        json_array_append_new(types, json_pack("{s:s, s:I, s:I}", "type", c->types[i].name,
                                               "count", (json_int_t)c->types[i].count, "bytes",
                                               (json_int_t)c->types[i].size));
    return json_pack("{s:f, s:f, s:I, s:I, s:I, s:I, s:b, s:I, s:i, s:I, s:I, s:I, s:o}",
                     "started", tc->started, "seconds", tc->seconds, "objects",
                     (json_int_t)c->objects, "bytes", (json_int_t)c->size, "unreadable",
                     (json_int_t)c->unreadable, "rss_bytes", (json_int_t)tc->rss, "paused",
                     c->paused, "interpreters", (json_int_t)c->interpreters, "retries",
                     (int)c->retries, "relinks", (json_int_t)c->relinks, "copied_bytes",
                     (json_int_t)c->copied, "syscalls", (json_int_t)c->syscalls, "types", types);
}

static json_t *growth_json(const struct heap_growth *g, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "type", g[i].name,
                           "count_before", (json_int_t)g[i].count_before, "count_after",
                           (json_int_t)g[i].count_after, "count_delta",
                           (json_int_t)g[i].count_delta, "bytes_before",
                           (json_int_t)g[i].size_before, "bytes_after",
                           (json_int_t)g[i].size_after, "bytes_delta",
                           (json_int_t)g[i].size_delta));
    return arr;
}

static json_t *rss_json(const struct timed_census *a, const struct timed_census *b,
                        const struct rss_trend *tr)
{
    double interval = b->mono - a->mono;
    int64_t delta = (int64_t)b->rss - (int64_t)a->rss;
    uint64_t lo = a->rss, hi = a->rss;
    json_t *samples = json_array();
    json_array_append_new(samples, json_pack("[f, I]", 0.0, (json_int_t)a->rss));
    for (size_t i = 0; i < tr->n; i++) {
        lo = tr->bytes[i] < lo ? tr->bytes[i] : lo;
        hi = tr->bytes[i] > hi ? tr->bytes[i] : hi;
        json_array_append_new(samples, json_pack("[f, I]", tr->t[i], (json_int_t)tr->bytes[i]));
    }
    lo = b->rss < lo ? b->rss : lo;
    hi = b->rss > hi ? b->rss : hi;
    json_array_append_new(samples, json_pack("[f, I]", interval, (json_int_t)b->rss));
    return json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:o}", "before", (json_int_t)a->rss,
                     "after", (json_int_t)b->rss, "delta", (json_int_t)delta, "per_second",
                     interval > 0 ? (double)delta / interval : 0.0, "min", (json_int_t)lo, "max",
                     (json_int_t)hi, "samples", samples);
}

static int write_json(json_t *doc, struct pm_error *err)
{
    int rc = json_dumpf(doc, stdout, JSON_INDENT(2));
    if (rc != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        return pm_fail(err, PM_EOUTPUT, "cannot write to standard output");
    return 0;
}

/* ---- the command ------------------------------------------------------------ */

static void on_interrupt(int sig)
{
    (void)sig;
    stop_waiting = 1;
}

int cmd_heap(int argc, char **argv)
{
    struct heap_opts o;
    int rc = parse_heap_args(argc, argv, &o);
    if (rc == -2)
        return 0;
    if (rc != 0)
        return rc;
    struct pm_error err = {0};
    struct py_process *py = NULL;
    struct timed_census *tc = calloc(2, sizeof *tc);
    struct rss_trend *trend = calloc(1, sizeof *trend);
    struct heap_growth *growth = NULL;
    size_t ngrowth = 0;
    json_t *doc = NULL;
    if (tc == NULL || trend == NULL) {
        pm_fail(&err, PM_ENOMEM, "out of memory");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    if (py_attach(o.pid, &py, &err) != 0)
        goto out;
    if (take_census(py, &o, o.diff > 0 ? "census 1 of 2" : "census", &tc[0], &err) != 0)
        goto out;
    if (o.diff > 0) {
        /* Ctrl-C from here on takes the second census at once */
        struct sigaction sa, old_int, old_term;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_interrupt;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        fprintf(stderr, "pyrometer: census 1 of 2 done: %llu objects in %.3f s; the second in "
                        "%g s (Ctrl-C: now)\n",
                (unsigned long long)tc[0].census.objects, tc[0].seconds, o.diff);
        fflush(stderr);
        wait_sampling(o.pid, tc[0].mono, tc[0].mono + o.diff, trend);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (take_census(py, &o, "census 2 of 2", &tc[1], &err) != 0)
            goto out;
        if (heap_growth(&tc[0].census, &tc[1].census, &growth, &ngrowth) != 0) {
            pm_fail(&err, PM_ENOMEM, "out of memory");
            goto out;
        }
    }
    if (o.json) {
        doc = json_pack("{s:i, s:s, s:s}", "pid", (int)o.pid, "python_version",
                        py_get_version(py)->text, "python_binary", py_binary(py));
        if (o.diff > 0) {
            json_object_set_new(doc, "interval_seconds", json_real(tc[1].mono - tc[0].mono));
            json_object_set_new(doc, "before", census_json(&tc[0]));
            json_object_set_new(doc, "after", census_json(&tc[1]));
            json_object_set_new(doc, "growth", growth_json(growth, ngrowth));
            json_object_set_new(doc, "rss", rss_json(&tc[0], &tc[1], trend));
        } else {
            json_object_set_new(doc, "census", census_json(&tc[0]));
        }
        write_json(doc, &err);
        goto out;
    }
    print_header(&o, py);
    if (o.diff > 0) {
        print_summary("Census 1", &tc[0]);
        print_summary("Census 2", &tc[1]);
        print_rss_trend(&tc[0], &tc[1], trend);
        print_growth(growth, ngrowth, o.rows);
        printf("\nCensus 2 by size:");
        print_table(&tc[1].census, o.rows);
    } else {
        print_summary("Heap census", &tc[0]);
        print_table(&tc[0].census, o.rows);
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        pm_fail(&err, PM_EOUTPUT, "cannot write to standard output");
out:
    rc = err.code != PM_OK ? cmd_report_error(&err) : 0;
    json_decref(doc);
    free(growth);
    if (tc) {
        heap_census_free(&tc[0].census);
        heap_census_free(&tc[1].census);
    }
    free(tc);
    free(trend);
    py_detach(py);
    return rc;
}
