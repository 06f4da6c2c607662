/*
 * requests.c — `pyrometer requests DB`: what the in-process agent recorded,
 * per endpoint (count, p50/p95/p99 latency, mean queries and DB time) with
 * the N+1 findings (call site and an example query); as text, JSON
 * (--json) or a self-contained HTML page (--html FILE); and --budget FILE,
 * per-endpoint limits checked for CI (exit 6 when one is broken).
 *
 * Reads the SQLite file read-only (schema: src/agent/store.c) while agents
 * may still be writing it.  Percentiles are nearest-rank over every
 * recorded request of the endpoint.  An endpoint is METHOD plus route
 * pattern; requests that resolved to no route are "(no route)".
 *
 * Budget file (JSON): limits for every endpoint under "default", and per
 * endpoint under "endpoints", keyed "METHOD /route/" or "/route/" (any
 * method); the specific entry overrides the default key by key:
 *   {"default": {"max_queries": 50, "p95_ms": 500},
 *    "endpoints": {"GET /authors/": {"max_queries": 5, "p95_ms": 50,
 *                                    "p99_ms": 80, "max_n_plus_one": 0}}}
 * max_queries bounds every request; p50/p95/p99_ms the endpoint's
 * percentiles; max_n_plus_one the N+1 findings (distinct call sites).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/text.h"
#include "cmd.h"

#define REQUESTS_EXIT_OVER_BUDGET 6
#define NO_ROUTE "(no route)"

struct requests_opts {
    const char *db;
    const char *html;
    const char *budget;
    int json;
};

struct finding {
    char *fingerprint, *sql, *file, *function, *example_params;
    int line;
    long requests;      /* requests with this finding */
    long max_count;     /* most queries in one of them */
};

struct endpoint {
    char *method, *route, *view;
    char label[400];
    long count, errors, max_queries;
    double mean_queries, mean_db_ms, mean_cpu_ms, mean_agent_us;
    long duplicates, similar;
    double p50, p95, p99;   /* ms */
    struct finding *findings;
    size_t nfindings;
};

struct report {
    char service[200];
    long total;
    struct endpoint *endpoints;
    size_t nendpoints;
};

static void requests_usage(FILE *out)
{
    fprintf(out,
            "usage: pyrometer requests [options] DB\n\n"
            "Per-endpoint latency, queries and N+1 findings recorded by pyrometer's in-process\n"
            "agent (pyrometer run, or \"pyrometer.django\" in INSTALLED_APPS) in the SQLite file DB.\n\n"
            "      --json             print JSON instead of text\n"
            "      --html FILE        also write a self-contained HTML report to FILE\n"
            "      --budget FILE      check per-endpoint limits (JSON: max_queries, p50_ms,\n"
            "                         p95_ms, p99_ms, max_n_plus_one); exit 6 if one is broken\n"
            "  -h, --help             this text\n");
}

static int parse_requests_args(int argc, char **argv, struct requests_opts *o)
{
    static const struct option longopts[] = {
        {"json", no_argument, 0, 'j'},          {"html", required_argument, 0, 'H'},
        {"budget", required_argument, 0, 'b'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': o->json = 1; break;
        case 'H': o->html = optarg; break;
        case 'b': o->budget = optarg; break;
        case 'h': requests_usage(stdout); return -2;
        default:
            return cmd_usage_error("requests", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cmd_usage_error("requests", "no database given");
    if (optind + 1 < argc)
        return cmd_usage_error("requests", "one database only (got '%s' too)", argv[optind + 1]);
    o->db = argv[optind];
    return 0;
}

/* ---- reading ----------------------------------------------------------- */

static char *column_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? strdup((const char *)s) : NULL;
}

static double percentile(const int64_t *sorted, long n, double p)
{
    if (n <= 0)
        return 0;
    long rank = (long)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1e6;
}

static int db_error(sqlite3 *db, const char *path, struct pm_error *err)
{
    return pm_fail(err, PM_EFORMAT, "%s: %s (is it a pyrometer agent database?)", path,
                   sqlite3_errmsg(db));
}

static int load_latencies(sqlite3 *db, struct endpoint *e, struct pm_error *err, const char *path)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT latency_ns FROM requests WHERE method IS ? AND route IS ?"
                           " ORDER BY latency_ns", -1, &st, NULL) != SQLITE_OK)
        return db_error(db, path, err);
    sqlite3_bind_text(st, 1, e->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->route, -1, SQLITE_STATIC);
    int64_t *lat = malloc((size_t)(e->count > 0 ? e->count : 1) * sizeof *lat);
    long n = 0;
    if (lat == NULL) {
        sqlite3_finalize(st);
        return pm_fail(err, PM_ENOMEM, "out of memory");
    }
    while (sqlite3_step(st) == SQLITE_ROW && n < e->count)
        lat[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    e->p50 = percentile(lat, n, 50);
    e->p95 = percentile(lat, n, 95);
    e->p99 = percentile(lat, n, 99);
    free(lat);
    return 0;
}

static int load_findings(sqlite3 *db, struct endpoint *e, struct pm_error *err, const char *path)
{
    sqlite3_stmt *st;
    static const char sql[] =
        "SELECT f.fingerprint, fp.sql, f.file, f.line, f.function, COUNT(*), MAX(f.count),"
        " MAX(f.example_params)"
        " FROM findings f JOIN requests r ON r.id = f.request_id"
        " LEFT JOIN fingerprints fp ON fp.fingerprint = f.fingerprint"
        " WHERE r.method IS ? AND r.route IS ?"
        " GROUP BY f.fingerprint, f.file, f.line, f.function"
        " ORDER BY MAX(f.count) DESC, COUNT(*) DESC";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(db, path, err);
    sqlite3_bind_text(st, 1, e->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->route, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct finding *f = realloc(e->findings, (e->nfindings + 1) * sizeof *f);
        if (f == NULL) {
            sqlite3_finalize(st);
            return pm_fail(err, PM_ENOMEM, "out of memory");
        }
        e->findings = f;
        f = &e->findings[e->nfindings++];
        f->fingerprint = column_dup(st, 0);
        f->sql = column_dup(st, 1);
        f->file = column_dup(st, 2);
        f->line = sqlite3_column_int(st, 3);
        f->function = column_dup(st, 4);
        f->requests = sqlite3_column_int64(st, 5);
        f->max_count = sqlite3_column_int64(st, 6);
        f->example_params = column_dup(st, 7);
    }
    sqlite3_finalize(st);
    return 0;
}

static int load_report(const char *path, struct report *rep, struct pm_error *err)
{
    memset(rep, 0, sizeof *rep);
    if (access(path, F_OK) != 0)
        return pm_fail(err, PM_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        pm_fail(err, PM_ENOTFOUND, "cannot open %s: %s", path,
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 10000);
    int rc = -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'service'", -1, &st, NULL)
        != SQLITE_OK) {
        db_error(db, path, err);
        goto out;
    }
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(rep->service, sizeof rep->service, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    static const char sql[] =
        "SELECT method, route, MAX(view), COUNT(*), SUM(status >= 500), AVG(query_count),"
        " MAX(query_count), AVG(db_ns), AVG(cpu_ns), SUM(duplicate_count), SUM(similar_count),"
        " AVG(agent_ns)"
        " FROM requests GROUP BY method, route ORDER BY COUNT(*) DESC, method, route";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_error(db, path, err);
        goto out;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct endpoint *e = realloc(rep->endpoints, (rep->nendpoints + 1) * sizeof *e);
        if (e == NULL) {
            sqlite3_finalize(st);
            pm_fail(err, PM_ENOMEM, "out of memory");
            goto out;
        }
        rep->endpoints = e;
        e = &rep->endpoints[rep->nendpoints++];
        memset(e, 0, sizeof *e);
        e->method = column_dup(st, 0);
        e->route = column_dup(st, 1);
        e->view = column_dup(st, 2);
        e->count = sqlite3_column_int64(st, 3);
        e->errors = sqlite3_column_int64(st, 4);
        e->mean_queries = sqlite3_column_double(st, 5);
        e->max_queries = sqlite3_column_int64(st, 6);
        e->mean_db_ms = sqlite3_column_double(st, 7) / 1e6;
        e->mean_cpu_ms = sqlite3_column_double(st, 8) / 1e6;
        e->duplicates = sqlite3_column_int64(st, 9);
        e->similar = sqlite3_column_int64(st, 10);
        e->mean_agent_us = sqlite3_column_double(st, 11) / 1e3;
        snprintf(e->label, sizeof e->label, "%s%s%s", e->method ? e->method : "",
                 e->method ? " " : "", e->route ? e->route : NO_ROUTE);
        rep->total += e->count;
    }
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        db_error(db, path, err);
        goto out;
    }
    for (size_t i = 0; i < rep->nendpoints; i++)
        if (load_latencies(db, &rep->endpoints[i], err, path) != 0 ||
            load_findings(db, &rep->endpoints[i], err, path) != 0)
            goto out;
    rc = 0;
out:
    sqlite3_close(db);
    return rc;
}

static void free_report(struct report *rep)
{
    for (size_t i = 0; i < rep->nendpoints; i++) {
        struct endpoint *e = &rep->endpoints[i];
        for (size_t k = 0; k < e->nfindings; k++) {
            struct finding *f = &e->findings[k];
            free(f->fingerprint);
            free(f->sql);
            free(f->file);
            free(f->function);
            free(f->example_params);
        }
        free(e->findings);
        free(e->method);
        free(e->route);
        free(e->view);
    }
    free(rep->endpoints);
}

/* ---- budget -------------------------------------------------------------- */

static const char *const budget_keys[] = {"max_queries", "p50_ms", "p95_ms", "p99_ms",
                                          "max_n_plus_one"};
#define NBUDGET (sizeof budget_keys / sizeof budget_keys[0])

struct limits {
    int set[NBUDGET];
    double value[NBUDGET];
};

static int read_limits(json_t *obj, const char *where, struct limits *l, struct pm_error *err)
{
    if (!json_is_object(obj))
        return pm_fail(err, PM_EUSAGE, "budget: %s must be an object", where);
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        size_t k = 0;
        while (k < NBUDGET && strcmp(key, budget_keys[k]) != 0)
            k++;
        if (k == NBUDGET)
            return pm_fail(err, PM_EUSAGE, "budget: unknown limit '%s' in %s (known: max_queries, "
                           "p50_ms, p95_ms, p99_ms, max_n_plus_one)", key, where);
        if (!json_is_number(value) || json_number_value(value) < 0)
            return pm_fail(err, PM_EUSAGE, "budget: %s in %s must be a number >= 0", key, where);
        l->set[k] = 1;
        l->value[k] = json_number_value(value);
    }
    return 0;
}

struct violation {
    const char *endpoint;
    const char *limit;
    double actual, allowed;
};

/* Check every endpoint; violations appended to *out (JSON array) and
 * counted.  Returns -1 on a malformed budget file. */
static int check_budget(const char *path, const struct report *rep, json_t *out, long *broken,
                        struct pm_error *err)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    *broken = 0;
    if (doc == NULL)
        return pm_fail(err, PM_EUSAGE, "budget %s: %s (line %d)", path, jerr.text, jerr.line);
    int rc = -1;
    struct limits defaults = {{0}, {0}};
    json_t *def = json_object_get(doc, "default");
    json_t *eps = json_object_get(doc, "endpoints");
    const char *key;
    json_t *value;
    if (!json_is_object(doc)) {
        pm_fail(err, PM_EUSAGE, "budget %s: must be a JSON object", path);
        goto out;
    }
    json_object_foreach(doc, key, value) {
        if (strcmp(key, "default") != 0 && strcmp(key, "endpoints") != 0) {
            pm_fail(err, PM_EUSAGE, "budget %s: unknown key '%s' (default, endpoints)", path, key);
            goto out;
        }
    }
    if (def && read_limits(def, "default", &defaults, err) != 0)
        goto out;
    if (eps && !json_is_object(eps)) {
        pm_fail(err, PM_EUSAGE, "budget %s: endpoints must be an object", path);
        goto out;
    }
    json_object_foreach(eps, key, value) {   /* validate every entry, used or not */
        struct limits scratch = {{0}, {0}};
        if (read_limits(value, key, &scratch, err) != 0)
            goto out;
    }
    for (size_t i = 0; i < rep->nendpoints; i++) {
        const struct endpoint *e = &rep->endpoints[i];
        struct limits l = defaults;
        json_t *specific = eps ? json_object_get(eps, e->label) : NULL;
        if (specific == NULL && eps && e->route)
            specific = json_object_get(eps, e->route);
        if (specific)
            read_limits(specific, e->label, &l, err);
        double actual[NBUDGET] = {(double)e->max_queries, e->p50, e->p95, e->p99,
                                  (double)e->nfindings};
        for (size_t k = 0; k < NBUDGET; k++) {
            if (!l.set[k] || actual[k] <= l.value[k])
                continue;
            (*broken)++;
            json_array_append_new(out, json_pack("{s:s, s:s, s:f, s:f}", "endpoint", e->label,
                                                 "limit", budget_keys[k], "actual", actual[k],
                                                 "allowed", l.value[k]));
        }
    }
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

/* ---- output ---------------------------------------------------------------- */

static void print_site(FILE *out, const struct finding *f)
{
    if (f->file) {
        text_put(out, f->file);
        fprintf(out, ":%d in ", f->line);
        text_put(out, f->function ? f->function : "?");
    } else {
        fprintf(out, "(no application frame)");
    }
}

static void print_text(FILE *out, const char *path, const struct report *rep)
{
    int width = 8;
    for (size_t i = 0; i < rep->nendpoints; i++) {
        int len = (int)strlen(rep->endpoints[i].label);
        if (len > width)
            width = len > 60 ? 60 : len;
    }
    fprintf(out, "%s: service %s, %ld request%s, %zu endpoint%s\n\n", path,
            rep->service[0] ? rep->service : "?", rep->total, rep->total == 1 ? "" : "s",
            rep->nendpoints, rep->nendpoints == 1 ? "" : "s");
    if (rep->nendpoints == 0)
        return;
    fprintf(out, "%-*s %7s %9s %9s %9s %8s %9s %5s %4s\n", width, "ENDPOINT", "COUNT", "P50 MS",
            "P95 MS", "P99 MS", "QUERIES", "DB MS", "DUPS", "N+1");
    size_t total_findings = 0;
    for (size_t i = 0; i < rep->nendpoints; i++) {
        const struct endpoint *e = &rep->endpoints[i];
        char label[sizeof e->label];
        snprintf(label, sizeof label, "%s", e->label);
        text_one_line(label);   /* a route is the application's text */
        fprintf(out, "%-*.*s %7ld %9.2f %9.2f %9.2f %8.1f %9.2f %5ld %4zu\n", width, width,
                label, e->count, e->p50, e->p95, e->p99, e->mean_queries, e->mean_db_ms,
                e->duplicates, e->nfindings);
        total_findings += e->nfindings;
    }
    fprintf(out, "\n(QUERIES and DB MS are means per request; DUPS counts queries repeating "
                 "an earlier one's SQL and parameters)\n\n");
    if (total_findings == 0) {
        fprintf(out, "No N+1 findings.\n");
        return;
    }
    fprintf(out, "N+1 findings:\n");
    for (size_t i = 0; i < rep->nendpoints; i++) {
        const struct endpoint *e = &rep->endpoints[i];
        if (e->nfindings == 0)
            continue;
        fputs("  ", out);
        text_put(out, e->label);
        if (e->view) {
            fputs(" (", out);
            text_put(out, e->view);
            fputs(")", out);
        }
        fputs("\n", out);
        for (size_t k = 0; k < e->nfindings; k++) {
            const struct finding *f = &e->findings[k];
            fprintf(out, "    %ld queries from ", f->max_count);
            print_site(out, f);
            fprintf(out, ", in %ld of %ld requests\n      ", f->requests, e->count);
            text_put(out, f->sql ? f->sql : "?");   /* a multi-line query: one line */
            fputs("\n", out);
            if (f->example_params) {
                fputs("      params: ", out);
                text_put(out, f->example_params);
                fputs("\n", out);
            }
        }
    }
}

static json_t *report_json(const struct report *rep)
{
    json_t *eps = json_array();
    for (size_t i = 0; i < rep->nendpoints; i++) {
        const struct endpoint *e = &rep->endpoints[i];
        json_t *findings = json_array();
        for (size_t k = 0; k < e->nfindings; k++) {
            const struct finding *f = &e->findings[k];
            json_t *jf = json_pack("{s:s?, s:s?, s:s?, s:s?, s:I, s:I}", "fingerprint",
                                   f->fingerprint, "sql", f->sql, "file", f->file, "function",
                                   f->function, "requests", (json_int_t)f->requests,
                                   "max_count", (json_int_t)f->max_count);
            json_object_set_new(jf, "line", f->file ? json_integer(f->line) : json_null());
            if (f->example_params)
                json_object_set_new(jf, "example_params", json_string(f->example_params));
            json_array_append_new(findings, jf);
        }
        json_array_append_new(eps, json_pack(
            "{s:s, s:s?, s:s?, s:s?, s:I, s:I, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:I, s:I, s:o}",
            "endpoint", e->label, "method", e->method, "route", e->route, "view", e->view,
            "count", (json_int_t)e->count, "errors", (json_int_t)e->errors, "p50_ms", e->p50,
            "p95_ms", e->p95, "p99_ms", e->p99, "mean_queries", e->mean_queries, "max_queries",
            (json_int_t)e->max_queries, "mean_db_ms", e->mean_db_ms, "mean_cpu_ms",
            e->mean_cpu_ms, "duplicates", (json_int_t)e->duplicates, "similar",
            (json_int_t)e->similar, "n_plus_one", findings));
        json_object_set_new(json_array_get(eps, json_array_size(eps) - 1), "mean_agent_us",
                            json_real(e->mean_agent_us));
    }
    return json_pack("{s:s, s:I, s:o}", "service", rep->service, "requests",
                     (json_int_t)rep->total, "endpoints", eps);
}

static void html_escape(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
    }
}

static void write_html(FILE *out, const char *path, const struct report *rep)
{
    double worst = 0;
    for (size_t i = 0; i < rep->nendpoints; i++)
        if (rep->endpoints[i].p95 > worst)
            worst = rep->endpoints[i].p95;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>pyrometer: ",
          out);
    html_escape(out, rep->service);
    fputs(" requests</title>\n<style>\n"
          "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\n"
          "table{border-collapse:collapse;margin:1em 0}\n"
          "th,td{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:right}\n"
          "th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}\n"
          "td:first-child{white-space:nowrap}\n"
          "th{background:#f4f4f4}\n.bar{background:#e8663d;height:.7em;display:inline-block}\n"
          ".bad{color:#b00020;font-weight:bold}\npre{background:#f7f7f7;padding:.6em;"
          "white-space:pre-wrap;word-break:break-all}\n.site{font-family:monospace}\n"
          "</style></head><body>\n<h1>Requests and queries: ", out);
    html_escape(out, rep->service);
    fprintf(out, "</h1>\n<p>%ld requests in %zu endpoints, from <code>", rep->total,
            rep->nendpoints);
    html_escape(out, path);
    fputs("</code>. Latency percentiles are nearest-rank; queries and DB time are means per "
          "request.</p>\n<table><tr><th>endpoint</th><th>view</th><th>count</th><th>p50 ms</th>"
          "<th>p95 ms</th><th>p99 ms</th><th></th><th>queries</th><th>max</th><th>DB ms</th>"
          "<th>dups</th><th>N+1</th></tr>\n", out);
    for (size_t i = 0; i < rep->nendpoints; i++) {
        const struct endpoint *e = &rep->endpoints[i];
        fputs("<tr><td>", out);
        html_escape(out, e->label);
        fputs("</td><td>", out);
        html_escape(out, e->view ? e->view : "");
        fprintf(out, "</td><td>%ld</td><td>%.2f</td><td>%.2f</td><td>%.2f</td>"
                     "<td style=\"text-align:left;width:120px\"><span class=\"bar\" "
                     "style=\"width:%dpx\"></span></td><td>%.1f</td><td>%ld</td><td>%.2f</td>"
                     "<td>%ld</td><td%s>%zu</td></tr>\n",
                e->count, e->p50, e->p95, e->p99,
                worst > 0 ? (int)(120.0 * e->p95 / worst) : 0, e->mean_queries, e->max_queries,
                e->mean_db_ms, e->duplicates, e->nfindings ? " class=\"bad\"" : "", e->nfindings);
    }
    fputs("</table>\n<h2>N+1 findings</h2>\n", out);
    int any = 0;
    for (size_t i = 0; i < rep->nendpoints; i++) {
        const struct endpoint *e = &rep->endpoints[i];
        for (size_t k = 0; k < e->nfindings; k++) {
            const struct finding *f = &e->findings[k];
            any = 1;
            fputs("<h3>", out);
            html_escape(out, e->label);
            fprintf(out, "</h3>\n<p>%ld queries with one fingerprint from <span class=\"site\">",
                    f->max_count);
            if (f->file) {
                html_escape(out, f->file);
                fprintf(out, ":%d</span> in <span class=\"site\">", f->line);
                html_escape(out, f->function ? f->function : "?");
            } else {
                fputs("(no application frame)", out);
            }
            fprintf(out, "</span>, in %ld of %ld requests.</p>\n<pre>", f->requests, e->count);
            html_escape(out, f->sql ? f->sql : "?");
            fputs("</pre>\n", out);
            if (f->example_params) {
                fputs("<p>Example parameters: <code>", out);
                html_escape(out, f->example_params);
                fputs("</code></p>\n", out);
            }
        }
    }
    if (!any)
        fputs("<p>None.</p>\n", out);
    fputs("</body></html>\n", out);
}

static int write_html_file(const char *file, const char *db, const struct report *rep,
                           struct pm_error *err)
{
    FILE *out = fopen(file, "w");
    if (out == NULL)
        return pm_fail(err, PM_EOUTPUT, "cannot write %s: %s", file, strerror(errno));
    write_html(out, db, rep);
    if (ferror(out) | (fclose(out) != 0))
        return pm_fail(err, PM_EOUTPUT, "cannot write %s: %s", file, strerror(errno));
    return 0;
}

int cmd_requests(int argc, char **argv)
{
    struct requests_opts o;
    int rc = parse_requests_args(argc, argv, &o);
    if (rc == -2)
        return 0;
    if (rc != 0)
        return rc;
    struct pm_error err = {0};
    struct report rep;
    if (load_report(o.db, &rep, &err) != 0) {
        free_report(&rep);
        return cmd_report_error(&err);
    }
    json_t *violations = json_array();
    long broken = 0;
    int status = 0;
    if (o.budget && check_budget(o.budget, &rep, violations, &broken, &err) != 0) {
        status = cmd_report_error(&err);
        goto out;
    }
    if (o.html && write_html_file(o.html, o.db, &rep, &err) != 0) {
        status = cmd_report_error(&err);
        goto out;
    }
    if (o.json) {
        json_t *doc = report_json(&rep);
        if (o.budget) {
            json_object_set(doc, "budget_violations", violations);
            json_object_set_new(doc, "budget_ok", json_boolean(broken == 0));
        }
        int bad = json_dumpf(doc, stdout, JSON_INDENT(2)) != 0;
        json_decref(doc);
        if (bad || fputc('\n', stdout) == EOF)
            status = cmd_report_error(&(struct pm_error){PM_EOUTPUT, "cannot write to stdout"});
    } else {
        print_text(stdout, o.db, &rep);
        if (o.budget) {
            size_t i;
            json_t *v;
            fprintf(stdout, "\nBudget %s: %s\n", o.budget,
                    broken ? "BROKEN" : "every endpoint within its limits");
            json_array_foreach(violations, i, v) {
                const char *limit = json_string_value(json_object_get(v, "limit"));
                fprintf(stdout, "  %s: %s is %g, limit %g\n",
                        json_string_value(json_object_get(v, "endpoint")), limit,
                        json_real_value(json_object_get(v, "actual")),
                        json_real_value(json_object_get(v, "allowed")));
            }
        }
        if (fflush(stdout) != 0)
            status = cmd_report_error(&(struct pm_error){PM_EOUTPUT, "cannot write to stdout"});
    }
    if (status == 0 && broken > 0) {
        fprintf(stderr, "pyrometer: error: over budget: %ld limit%s broken (%s)\n", broken,
                broken == 1 ? "" : "s", o.budget);
        status = REQUESTS_EXIT_OVER_BUDGET;
    }
out:
    json_decref(violations);
    free_report(&rep);
    return status;
}
