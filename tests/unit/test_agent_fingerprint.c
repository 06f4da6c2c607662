/*
 * test_agent_fingerprint.c — the agent's SQL normalisation and fingerprint
 * hash (src/agent/fingerprint.c), and the analysis of a request's queries
 * (src/agent/record.c): duplicates, similar queries, N+1 findings.
 * Every case states the exact text expected; normalising twice must change
 * nothing; small output buffers are exact-size heap blocks so ASan sees any
 * write past them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/fingerprint.h"
#include "agent/record.h"

static const struct {
    const char *sql, *normalized;
} cases[] = {
    {"SELECT 1", "SELECT ?"},
    {"  select   *\n\tfrom t  ", "select * from t"},
    {"SELECT * FROM t WHERE a = 'it''s' AND b = 42", "SELECT * FROM t WHERE a = ? AND b = ?"},
    {"SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (...)"},
    {"SELECT * FROM t WHERE id IN (%s, %s, %s, %s)", "SELECT * FROM t WHERE id IN (...)"},
    {"SELECT * FROM t WHERE id IN (?)", "SELECT * FROM t WHERE id IN (...)"},
    {"INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')", "INSERT INTO t (a, b) VALUES (...)"},
    {"INSERT INTO t VALUES (%s,%s),(%s,%s)", "INSERT INTO t VALUES (...)"},
    {"SELECT \"t\".\"id\" FROM \"t\" WHERE \"t\".\"x\" = %s LIMIT 21",
     "SELECT \"t\".\"id\" FROM \"t\" WHERE \"t\".\"x\" = ? LIMIT ?"},
    {"SELECT \"weird (1, 2)\" FROM t", "SELECT \"weird (1, 2)\" FROM t"},
    {"SELECT a -- the comment 123\nFROM t /* block 'x' */ WHERE b = 1",
     "SELECT a FROM t WHERE b = ?"},
    {"SELECT * FROM t1 WHERE c2 = -5 AND d = 3.14e-2 AND e = .5 AND f = 0x1F",
     "SELECT * FROM t1 WHERE c2 = ? AND d = ? AND e = ? AND f = ?"},
    {"SELECT a-1 FROM t", "SELECT a-? FROM t"},
    {"SELECT $1, $22 FROM t WHERE a = :name AND b = %(key)s AND c = ?3",
     "SELECT ?, ? FROM t WHERE a = ? AND b = ? AND c = ?"},
    {"SELECT x::int, E'a\\'b', N'c', $$dollar 'q'$$, $tag$x$tag$ FROM t",
     "SELECT x::int, ?, ?, ?, ? FROM t"},
    {"SELECT COUNT(*) FROM t WHERE title LIKE 'Book 1%'", "SELECT COUNT(*) FROM t WHERE title LIKE ?"},
    {"SELECT 1abc FROM t", "SELECT 1abc FROM t"},
    {"SELECT f(1, 2), g((3)) FROM t", "SELECT f(...), g((...)) FROM t"},
    {"SELECT 'unterminated", "SELECT ?"},
    {"SELECT \"unterminated", "SELECT \"unterminated"},
    {"SELECT '%%' || %% FROM t", "SELECT ? || %% FROM t"},
    {"", ""},
    {"   ", ""},
    /* found by fuzz_fingerprint: each must normalise the same way twice */
    {"SELECT 1:ti", "SELECT ?:ti"},
    {"SELECT x''1bob", "SELECT ?1bob"},     /* x'' is a hex literal */
    {"SELECT ''7.SE7", "SELECT ?7.SE7"},
    {"SELECT %(not a name)s, %(ok_1)s", "SELECT %(not a name)s, ?"},
};

static void test_normalize_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].sql);
        char *out = malloc(SQL_NORMALIZED_CAP(len));
        size_t n = sql_normalize(cases[i].sql, len, out, SQL_NORMALIZED_CAP(len));
        assert_int_equal(n, strlen(out));
        if (strcmp(out, cases[i].normalized) != 0)
            fail_msg("case %zu: %s\n  got      %s\n  expected %s", i, cases[i].sql, out,
                     cases[i].normalized);
        /* idempotent */
        char *again = malloc(SQL_NORMALIZED_CAP(n));
        sql_normalize(out, n, again, SQL_NORMALIZED_CAP(n));
        assert_string_equal(again, out);
        free(again);
        free(out);
    }
}

static void test_hash_folds_case_outside_quotes(void **state)
{
    (void)state;
    char a[256], b[256], c[256];
    size_t na, nb, nc;
    uint64_t ha = sql_fingerprint("SELECT * FROM t WHERE id = 1", 28, a, sizeof a, &na);
    uint64_t hb = sql_fingerprint("select *  from t where ID = 999", 31, b, sizeof b, &nb);
    uint64_t hc = sql_fingerprint("select * from \"T\" where id = 1", 30, c, sizeof c, &nc);
    assert_int_equal(ha, hb);
    assert_true(ha != hc);   /* "T" is a quoted identifier: case matters */
    assert_true(ha != 0 && hc != 0);
    uint64_t hd = sql_fingerprint("SELECT * FROM t WHERE id IN (1)", 31, c, sizeof c, &nc);
    uint64_t he = sql_fingerprint("SELECT * FROM t WHERE id IN (1,2,3,4,5,6)", 41, c, sizeof c, &nc);
    assert_int_equal(hd, he);
}

static void test_small_buffers_never_overflow(void **state)
{
    (void)state;
    const char *sql = "SELECT a, b FROM t WHERE c IN (1, 2, 3) AND d = 'long literal here'";
    for (size_t cap = 1; cap < 80; cap++) {
        char *out = malloc(cap);
        size_t n = sql_normalize(sql, strlen(sql), out, cap);
        assert_true(n < cap);
        assert_int_equal(out[n], '\0');
        free(out);
    }
}

/* ---- analysis ---------------------------------------------------------------- */

static struct agent_query *add(struct agent_request *r, const char *sql, uint64_t params,
                               const char *file, int line)
{
    struct agent_query *q = request_add_query(r);
    assert_non_null(q);
    q->sql = sql;
    q->sql_len = strlen(sql);
    q->params_hash = params;
    q->site.file = file;
    q->site.function = "view";
    q->site.line = line;
    q->duration_ns = 1000;
    return q;
}

static void test_analyze_duplicates_similar_n_plus_one(void **state)
{
    (void)state;
    struct agent_request *r = request_new();
    add(r, "SELECT * FROM a", 0, "v.py", 3);
    for (int i = 0; i < 7; i++)
        add(r, "SELECT * FROM b WHERE a_id = %s", (uint64_t)(100 + i), "v.py", 10);
    add(r, "SELECT * FROM b WHERE a_id = %s", 100, "v.py", 10);      /* duplicate of #1 */
    add(r, "SELECT * FROM b WHERE a_id = %s", 5, "w.py", 10);        /* other site */
    add(r, "SELECT * FROM a", 0, "v.py", 4);                          /* duplicate of #0 */
    struct agent_query *many = add(r, "INSERT INTO c VALUES (%s)", 1, "v.py", 20);
    many->many = 1;
    struct agent_query *many2 = add(r, "INSERT INTO c VALUES (%s)", 1, "v.py", 21);
    many2->many = 1;
    assert_int_equal(request_analyze(r, 5), 0);
    assert_int_equal(r->nqueries, 13);
    assert_int_equal(r->duplicates, 2);
    assert_int_equal(r->queries[8].duplicate, 1);
    assert_int_equal(r->queries[10].duplicate, 1);
    assert_int_equal(r->queries[0].duplicate, 0);
    assert_int_equal(r->queries[11].duplicate, 0);   /* executemany: never a duplicate */
    assert_int_equal(r->queries[12].duplicate, 0);
    /* 3 distinct fingerprints among 13 queries */
    assert_int_equal(r->similar, 10);
    assert_int_equal(r->nfindings, 1);
    assert_int_equal(r->findings[0].count, 8);
    assert_int_equal(r->findings[0].first_query, 1);
    assert_int_equal(r->findings[0].site.line, 10);
    assert_string_equal(r->findings[0].site.file, "v.py");
    assert_int_equal(r->findings[0].total_ns, 8000);
    assert_string_equal(r->findings[0].normalized, "SELECT * FROM b WHERE a_id = ?");
    assert_true(r->queries[1].normalized == r->queries[7].normalized);   /* shared text */
    request_free(r);
}

static void test_analyze_threshold_and_order(void **state)
{
    (void)state;
    struct agent_request *r = request_new();
    for (int i = 0; i < 4; i++)
        add(r, "SELECT 1 FROM x WHERE id = %s", (uint64_t)i, "a.py", 1);
    for (int i = 0; i < 6; i++)
        add(r, "SELECT 1 FROM y WHERE id = %s", (uint64_t)i, "a.py", 2);
    for (int i = 0; i < 5; i++)
        add(r, "SELECT 1 FROM z WHERE id = %s", (uint64_t)i, NULL, 0);   /* no app frame */
    assert_int_equal(request_analyze(r, 5), 0);
    assert_int_equal(r->nfindings, 2);
    assert_int_equal(r->findings[0].count, 6);
    assert_int_equal(r->findings[1].count, 5);
    assert_null(r->findings[1].site.file);
    assert_int_equal(request_analyze(r, 4), 0);
    assert_int_equal(r->nfindings, 3);
    assert_int_equal(request_analyze(r, 7), 0);
    assert_int_equal(r->nfindings, 0);
    request_free(r);

    r = request_new();
    assert_int_equal(request_analyze(r, 5), 0);
    assert_int_equal(r->nfindings + r->duplicates + r->similar, 0);
    request_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_cases),
        cmocka_unit_test(test_hash_folds_case_outside_quotes),
        cmocka_unit_test(test_small_buffers_never_overflow),
        cmocka_unit_test(test_analyze_duplicates_similar_n_plus_one),
        cmocka_unit_test(test_analyze_threshold_and_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
