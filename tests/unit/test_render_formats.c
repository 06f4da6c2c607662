/*
 * test_render_formats.c — the pprof, chrometrace and pstats outputs, on a
 * small hand-built profile whose every number is known:
 *   - pprof: inflated with zlib and parsed back by a small protobuf decoder
 *     written here (not the encoder's code); every sample's stack (leaf
 *     first), values and thread labels, the functions and locations, the
 *     sample/period types and times are checked;
 *   - chrometrace: parses as JSON; every event has ph/pid/tid/ts (and dur for
 *     "X"); slices nest on each thread; the exact slices of the timeline;
 *   - pstats: loaded by Python's own pstats.Stats (/usr/bin/python3), which
 *     must see the exact own/cumulative times, call counts and callers;
 *   - the format table, empty profiles, and write errors (PM_EOUTPUT).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <zlib.h>

#include "render/render.h"

#define MS 1000000ULL  /* nanoseconds */

/* The profile every test renders (100 Hz: a sample is 10 ms):
 *   thread 1001 "MainThread" (pid 4242), in time order:
 *     0, 10 ms  main:10;work:20;leaf:30
 *     20 ms     main:10;work:21
 *     30 ms     main:11;other:40
 *     40 ms     main:10;work:20;leaf:30
 *   thread 0x7f0000000002 (no kernel tid, no name), pid 4242:
 *     0 ms      rec:5;rec:6;rec:6        (recursion, /srv/rec.py)
 *     10, 20 ms worker:5;日本 (native)   (/srv/lib/w.py)
 */
static struct profile *make_profile(void)
{
    struct profile *p = profile_new();
    assert_non_null(p);
    p->meta.pid = 4242;
    p->meta.rate_hz = 100;
    p->meta.duration_ns = 50 * MS;
    p->meta.samples = 5;
    p->meta.start_unix_ns = 1700000000123456789ULL;
    snprintf(p->meta.python_version, sizeof p->meta.python_version, "3.12.1");
    snprintf(p->meta.program, sizeof p->meta.program, "python3 app.py \"q\"");

    uint32_t main10 = profile_frame(p, "main", "/srv/app.py", "app.py", 10, PROFILE_FRAME_PYTHON);
    uint32_t main11 = profile_frame(p, "main", "/srv/app.py", "app.py", 11, PROFILE_FRAME_PYTHON);
    uint32_t work20 = profile_frame(p, "work", "/srv/app.py", "app.py", 20, PROFILE_FRAME_PYTHON);
    uint32_t work21 = profile_frame(p, "work", "/srv/app.py", "app.py", 21, PROFILE_FRAME_PYTHON);
    uint32_t leaf30 = profile_frame(p, "leaf", "/srv/app.py", "app.py", 30, PROFILE_FRAME_PYTHON);
    uint32_t other40 = profile_frame(p, "other", "/srv/app.py", "app.py", 40,
                                     PROFILE_FRAME_PYTHON);
    uint32_t rec5 = profile_frame(p, "rec", "/srv/rec.py", "rec.py", 5, PROFILE_FRAME_PYTHON);
    uint32_t rec6 = profile_frame(p, "rec", "/srv/rec.py", "rec.py", 6, PROFILE_FRAME_PYTHON);
    uint32_t worker5 = profile_frame(p, "worker", "/srv/lib/w.py", "lib/w.py", 5,
                                     PROFILE_FRAME_PYTHON);
    uint32_t native = profile_frame(p, "日本", "", "", 0, PROFILE_FRAME_NATIVE);

    uint32_t t1 = profile_thread(p, 4242, 1, 1001, "MainThread");
    uint32_t t2 = profile_thread(p, 4242, 0x7f0000000002ULL, 0, NULL);
    uint32_t mwl[] = { main10, work20, leaf30 }, mw[] = { main10, work21 };
    uint32_t mo[] = { main11, other40 }, rrr[] = { rec5, rec6, rec6 };
    uint32_t wn[] = { worker5, native };

    profile_add(p, t1, mwl, 3, 1, 0);
    profile_add(p, t2, rrr, 3, 1, 0);
    profile_add(p, t1, mwl, 3, 1, 10 * MS);
    profile_add(p, t2, wn, 2, 1, 10 * MS);
    profile_add(p, t1, mw, 2, 1, 20 * MS);
    profile_add(p, t2, wn, 2, 1, 20 * MS);
    profile_add(p, t1, mo, 2, 1, 30 * MS);
    profile_add(p, t1, mwl, 3, 1, 40 * MS);
    assert_int_equal(profile_total(p), 8);
    return p;
}

typedef int (*render_fn)(const struct profile *, const struct render_opts *, FILE *,
                         struct pm_error *);

/* Render into a malloc'd buffer (NUL-terminated; *len excludes the NUL). */
static char *render_to_buffer(render_fn render, const struct profile *p,
                              const struct render_opts *o, size_t *len)
{
    char *data = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&data, &size);
    assert_non_null(out);
    struct pm_error err = { 0 };
    if (render(p, o, out, &err) != 0)
        fail_msg("render failed: %s", err.msg);
    assert_int_equal(fclose(out), 0);
    if (len)
        *len = size;
    return data;
}

/* Sort an array of strings and join them with '\n' (for order-free
 * comparisons with one readable failure message). */
static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *sorted_join(char **items, size_t n)
{
    qsort(items, n, sizeof *items, compare_strings);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(items[i]) + 1;
    char *text = malloc(len);
    assert_non_null(text);
    text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(text, items[i]);
        strcat(text, "\n");
    }
    return text;
}

/* ---------------------------------------------------------------------------
 * Format table and dispatch.
 * ------------------------------------------------------------------------- */

static void test_format_table(void **state)
{
    (void)state;
    assert_int_equal(render_format_parse("pprof"), RENDER_PPROF);
    assert_int_equal(render_format_parse("chrometrace"), RENDER_CHROMETRACE);
    assert_int_equal(render_format_parse("pstats"), RENDER_PSTATS);
    assert_int_equal(render_format_parse("PPROF"), -1);
    assert_string_equal(render_format_name(RENDER_PPROF), "pprof");
    assert_string_equal(render_format_name(RENDER_CHROMETRACE), "chrometrace");
    assert_string_equal(render_format_name(RENDER_PSTATS), "pstats");
    assert_string_equal(render_format_ext(RENDER_PPROF), "pb.gz");
    assert_string_equal(render_format_ext(RENDER_CHROMETRACE), "trace.json");
    assert_string_equal(render_format_ext(RENDER_PSTATS), "prof");
}

static void test_dispatch_matches_direct_calls(void **state)
{
    (void)state;
    struct profile *p = make_profile();
    const struct { enum render_format f; render_fn fn; } cases[] = {
        { RENDER_PPROF, render_pprof },
        { RENDER_CHROMETRACE, render_chrometrace },
        { RENDER_PSTATS, render_pstats },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t direct_len, via_len;
        char *direct = render_to_buffer(cases[i].fn, p, NULL, &direct_len);
        char *via = NULL;
        FILE *out = open_memstream(&via, &via_len);
        struct pm_error err = { 0 };
        assert_int_equal(render_profile(cases[i].f, p, NULL, out, &err), 0);
        fclose(out);
        assert_int_equal(via_len, direct_len);
        assert_memory_equal(via, direct, direct_len);
        free(direct);
        free(via);
    }
    profile_free(p);
}

static void test_write_errors_are_reported(void **state)
{
    (void)state;
    struct profile *p = make_profile();
    enum render_format formats[] = { RENDER_PPROF, RENDER_CHROMETRACE, RENDER_PSTATS };
    for (size_t i = 0; i < 3; i++) {
        FILE *full = fopen("/dev/full", "w");
        if (full == NULL)
            skip();
        struct pm_error err = { 0 };
        assert_int_equal(render_profile(formats[i], p, NULL, full, &err), -1);
        assert_int_equal(err.code, PM_EOUTPUT);
        assert_non_null(strstr(err.msg, "output"));
        fclose(full);
    }
    profile_free(p);
}

/* ---------------------------------------------------------------------------
 * pprof: an independent decoder.
 * ------------------------------------------------------------------------- */

/* Inflate a gzip stream; returns a malloc'd buffer. */
static unsigned char *gunzip(const char *data, size_t len, size_t *out_len)
{
    assert_true(len >= 18);
    assert_int_equal((unsigned char)data[0], 0x1f);  /* gzip magic */
    assert_int_equal((unsigned char)data[1], 0x8b);
    z_stream z = { 0 };
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    size_t cap = 4096, used = 0;
    unsigned char *buf = malloc(cap);
    z.next_in = (unsigned char *)data;
    z.avail_in = (uInt)len;
    int rc;
    do {
        if (used == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        z.next_out = buf + used;
        z.avail_out = (uInt)(cap - used);
        rc = inflate(&z, Z_NO_FLUSH);
        assert_true(rc == Z_OK || rc == Z_STREAM_END);
        used = cap - z.avail_out;
    } while (rc != Z_STREAM_END);
    assert_int_equal(z.avail_in, 0);  /* nothing after the gzip member */
    inflateEnd(&z);
    *out_len = used;
    return buf;
}

struct pb_reader {
    const unsigned char *at, *end;
};

static uint64_t read_varint(struct pb_reader *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        assert_true(r->at < r->end);
        unsigned char b = *r->at++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    fail_msg("varint longer than 10 bytes");
    return 0;
}

/* One field: its number and wire type; a varint's value in *value, a
 * length-delimited field's bytes in *sub. */
static int read_field(struct pb_reader *r, unsigned *field, unsigned *wire, uint64_t *value,
                      struct pb_reader *sub)
{
    if (r->at == r->end)
        return 0;
    uint64_t key = read_varint(r);
    *field = (unsigned)(key >> 3);
    *wire = (unsigned)(key & 7);
    assert_true(*field > 0);
    if (*wire == 0) {
        *value = read_varint(r);
    } else if (*wire == 2) {
        uint64_t len = read_varint(r);
        assert_true(len <= (uint64_t)(r->end - r->at));
        sub->at = r->at;
        sub->end = r->at + len;
        r->at += len;
    } else {
        fail_msg("unexpected wire type %u for field %u", *wire, *field);
    }
    return 1;
}

/* A repeated integer field, packed (wire 2) or not (wire 0). */
static void read_repeated(unsigned wire, uint64_t value, struct pb_reader *sub,
                          uint64_t *out, size_t *n, size_t cap)
{
    if (wire == 0) {
        assert_true(*n < cap);
        out[(*n)++] = value;
        return;
    }
    while (sub->at < sub->end) {
        assert_true(*n < cap);
        out[(*n)++] = read_varint(sub);
    }
}

#define MAXN 64

struct decoded_label {
    uint64_t key, str;
    int64_t num;
};

struct decoded_sample {
    uint64_t locations[MAXN];
    size_t nlocations;
    uint64_t values[MAXN];
    size_t nvalues;
    struct decoded_label labels[8];
    size_t nlabels;
};

struct decoded_profile {
    char *strings[MAXN];
    size_t nstrings;
    uint64_t sample_type[4][2];
    size_t nsample_types;
    struct decoded_sample samples[MAXN];
    size_t nsamples;
    struct { uint64_t id, function; int64_t line; } locations[MAXN];
    size_t nlocations;
    struct { uint64_t id, name, system_name, filename; int64_t start_line; } functions[MAXN];
    size_t nfunctions;
    uint64_t period_type[2];
    int64_t time_nanos, duration_nanos, period;
    uint64_t comments[MAXN];
    size_t ncomments;
};

static void decode_value_type(struct pb_reader *r, uint64_t out[2])
{
    unsigned field, wire;
    uint64_t value = 0;
    struct pb_reader sub;
    out[0] = out[1] = 0;
    while (read_field(r, &field, &wire, &value, &sub))
        if (wire == 0 && (field == 1 || field == 2))
            out[field - 1] = value;
}

static void decode_sample(struct pb_reader *r, struct decoded_sample *s)
{
    unsigned field, wire;
    uint64_t value = 0;
    struct pb_reader sub;
    memset(s, 0, sizeof *s);
    while (read_field(r, &field, &wire, &value, &sub)) {
        if (field == 1) {
            read_repeated(wire, value, &sub, s->locations, &s->nlocations, MAXN);
        } else if (field == 2) {
            read_repeated(wire, value, &sub, s->values, &s->nvalues, MAXN);
        } else if (field == 3) {
            assert_int_equal(wire, 2);
            assert_true(s->nlabels < 8);
            struct decoded_label *l = &s->labels[s->nlabels++];
            unsigned f2, w2;
            uint64_t v2 = 0;
            struct pb_reader sub2;
            while (read_field(&sub, &f2, &w2, &v2, &sub2)) {
                if (f2 == 1) l->key = v2;
                else if (f2 == 2) l->str = v2;
                else if (f2 == 3) l->num = (int64_t)v2;
            }
        }
    }
}

static void decode_profile(const unsigned char *data, size_t len, struct decoded_profile *d)
{
    memset(d, 0, sizeof *d);
    struct pb_reader r = { data, data + len }, sub;
    unsigned field, wire;
    uint64_t value = 0;
    while (read_field(&r, &field, &wire, &value, &sub)) {
        switch (field) {
        case 1:
            assert_true(d->nsample_types < 4);
            decode_value_type(&sub, d->sample_type[d->nsample_types++]);
            break;
        case 2:
            assert_true(d->nsamples < MAXN);
            decode_sample(&sub, &d->samples[d->nsamples++]);
            break;
        case 4: {
            assert_true(d->nlocations < MAXN);
            size_t i = d->nlocations++;
            unsigned f2, w2;
            uint64_t v2 = 0;
            struct pb_reader sub2;
            int lines = 0;
            while (read_field(&sub, &f2, &w2, &v2, &sub2)) {
                if (f2 == 1) {
                    d->locations[i].id = v2;
                } else if (f2 == 4) {
                    lines++;
                    unsigned f3, w3;
                    uint64_t v3 = 0;
                    struct pb_reader sub3;
                    while (read_field(&sub2, &f3, &w3, &v3, &sub3)) {
                        if (f3 == 1) d->locations[i].function = v3;
                        else if (f3 == 2) d->locations[i].line = (int64_t)v3;
                    }
                }
            }
            assert_int_equal(lines, 1);  /* no inlining in Python */
            break;
        }
        case 5: {
            assert_true(d->nfunctions < MAXN);
            size_t i = d->nfunctions++;
            unsigned f2, w2;
            uint64_t v2 = 0;
            struct pb_reader sub2;
            while (read_field(&sub, &f2, &w2, &v2, &sub2)) {
                if (f2 == 1) d->functions[i].id = v2;
                else if (f2 == 2) d->functions[i].name = v2;
                else if (f2 == 3) d->functions[i].system_name = v2;
                else if (f2 == 4) d->functions[i].filename = v2;
                else if (f2 == 5) d->functions[i].start_line = (int64_t)v2;
            }
            break;
        }
        case 6: {
            assert_int_equal(wire, 2);
            assert_true(d->nstrings < MAXN);
            size_t n = (size_t)(sub.end - sub.at);
            char *s = malloc(n + 1);
            memcpy(s, sub.at, n);
            s[n] = '\0';
            d->strings[d->nstrings++] = s;
            break;
        }
        case 9: d->time_nanos = (int64_t)value; break;
        case 10: d->duration_nanos = (int64_t)value; break;
        case 11: decode_value_type(&sub, d->period_type); break;
        case 12: d->period = (int64_t)value; break;
        case 13: read_repeated(wire, value, &sub, d->comments, &d->ncomments, MAXN); break;
        default: fail_msg("unexpected Profile field %u", field);
        }
    }
}

static void free_decoded(struct decoded_profile *d)
{
    for (size_t i = 0; i < d->nstrings; i++)
        free(d->strings[i]);
}

static const char *dstr(const struct decoded_profile *d, uint64_t i)
{
    assert_true(i < d->nstrings);
    return d->strings[i];
}

/* "name (file:line)" of location `id`, through its function. */
static void location_label(const struct decoded_profile *d, uint64_t id, char *buf, size_t cap)
{
    for (size_t i = 0; i < d->nlocations; i++) {
        if (d->locations[i].id != id)
            continue;
        for (size_t j = 0; j < d->nfunctions; j++) {
            if (d->functions[j].id != d->locations[i].function)
                continue;
            snprintf(buf, cap, "%s (%s:%lld)", dstr(d, d->functions[j].name),
                     dstr(d, d->functions[j].filename), (long long)d->locations[i].line);
            return;
        }
        fail_msg("location %llu names missing function %llu", (unsigned long long)id,
                 (unsigned long long)d->locations[i].function);
    }
    fail_msg("sample names missing location %llu", (unsigned long long)id);
}

/* Every sample as "labels | root;...;leaf | values", sorted, one per line. */
static char *describe_samples(const struct decoded_profile *d)
{
    char *lines[MAXN];
    for (size_t i = 0; i < d->nsamples; i++) {
        const struct decoded_sample *s = &d->samples[i];
        char text[2048] = "";
        for (size_t l = 0; l < s->nlabels; l++) {
            char part[128];
            if (s->labels[l].str)
                snprintf(part, sizeof part, "%s=%s ", dstr(d, s->labels[l].key),
                         dstr(d, s->labels[l].str));
            else
                snprintf(part, sizeof part, "%s=%lld ", dstr(d, s->labels[l].key),
                         (long long)s->labels[l].num);
            strcat(text, part);
        }
        strcat(text, "|");
        /* location ids are leaf first: print root first */
        for (size_t k = s->nlocations; k-- > 0;) {
            char label[256];
            location_label(d, s->locations[k], label, sizeof label);
            strcat(text, k + 1 == s->nlocations ? " " : ";");
            strcat(text, label);
        }
        strcat(text, " |");
        for (size_t v = 0; v < s->nvalues; v++) {
            char part[32];
            snprintf(part, sizeof part, " %llu", (unsigned long long)s->values[v]);
            strcat(text, part);
        }
        lines[i] = strdup(text);
    }
    char *joined = sorted_join(lines, d->nsamples);
    for (size_t i = 0; i < d->nsamples; i++)
        free(lines[i]);
    return joined;
}

static void render_and_decode(const struct profile *p, const struct render_opts *o,
                              struct decoded_profile *d)
{
    size_t len, raw_len;
    char *gz = render_to_buffer(render_pprof, p, o, &len);
    unsigned char *raw = gunzip(gz, len, &raw_len);
    decode_profile(raw, raw_len, d);
    free(raw);
    free(gz);
}

static void test_pprof_round_trip(void **state)
{
    (void)state;
    struct profile *p = make_profile();
    struct decoded_profile d;
    render_and_decode(p, NULL, &d);

    assert_true(d.nstrings > 0);
    assert_string_equal(d.strings[0], "");
    assert_int_equal(d.nsample_types, 2);
    assert_string_equal(dstr(&d, d.sample_type[0][0]), "samples");
    assert_string_equal(dstr(&d, d.sample_type[0][1]), "count");
    assert_string_equal(dstr(&d, d.sample_type[1][0]), "cpu");
    assert_string_equal(dstr(&d, d.sample_type[1][1]), "nanoseconds");
    assert_string_equal(dstr(&d, d.period_type[0]), "cpu");
    assert_string_equal(dstr(&d, d.period_type[1]), "nanoseconds");
    assert_int_equal(d.period, 10000000);
    assert_int_equal(d.time_nanos, 1700000000123456789LL);
    assert_int_equal(d.duration_nanos, 50 * MS);
    assert_int_equal(d.ncomments, 2);
    assert_string_equal(dstr(&d, d.comments[0]), "program: python3 app.py \"q\"");
    assert_string_equal(dstr(&d, d.comments[1]), "Python 3.12.1");

    /* main, work, leaf, other, rec, worker, 日本; locations per (function, line) */
    assert_int_equal(d.nfunctions, 7);
    assert_int_equal(d.nlocations, 10);
    for (size_t i = 0; i < d.nfunctions; i++) {
        assert_int_equal(d.functions[i].id, i + 1);
        assert_int_equal(d.functions[i].system_name, d.functions[i].name);
        const char *name = dstr(&d, d.functions[i].name);
        int64_t expected = strcmp(name, "main") == 0 ? 10 : strcmp(name, "work") == 0 ? 20
                         : strcmp(name, "leaf") == 0 ? 30 : strcmp(name, "other") == 0 ? 40
                         : strcmp(name, "rec") == 0 ? 5 : strcmp(name, "worker") == 0 ? 5 : 0;
        if (d.functions[i].start_line != expected)
            fail_msg("function %s starts at %lld, not %lld", name,
                     (long long)d.functions[i].start_line, (long long)expected);
    }
    for (size_t i = 0; i < d.nlocations; i++)
        assert_int_equal(d.locations[i].id, i + 1);

    char *samples = describe_samples(&d);
    assert_string_equal(samples,
        "thread_id=1001 pid=4242 thread_name=MainThread | main (app.py:10);work (app.py:20);"
            "leaf (app.py:30) | 3 30000000\n"
        "thread_id=1001 pid=4242 thread_name=MainThread | main (app.py:10);work (app.py:21)"
            " | 1 10000000\n"
        "thread_id=1001 pid=4242 thread_name=MainThread | main (app.py:11);other (app.py:40)"
            " | 1 10000000\n"
        "thread_id=139637976727554 pid=4242 | rec (rec.py:5);rec (rec.py:6);rec (rec.py:6)"
            " | 1 10000000\n"
        "thread_id=139637976727554 pid=4242 | worker (lib/w.py:5);日本 (:0) | 2 20000000\n");
    free(samples);
    free_decoded(&d);

    /* --full-filenames: functions name their full path */
    struct render_opts full = { .full_filenames = 1 };
    render_and_decode(p, &full, &d);
    samples = describe_samples(&d);
    assert_non_null(strstr(samples, "| main (/srv/app.py:10);work (/srv/app.py:20);"
                                    "leaf (/srv/app.py:30) | 3 30000000\n"));
    assert_non_null(strstr(samples, "| worker (/srv/lib/w.py:5);日本 (:0) | 2 20000000\n"));
    free(samples);
    free_decoded(&d);
    profile_free(p);
}

static void test_pprof_cleans_utf8_and_handles_odd_values(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    p->meta.rate_hz = 0;  /* unknown rate: period 0 */
    uint32_t t = profile_thread(p, 7, 9, 0, "bad\xff name");
    uint32_t f[2] = {
        profile_frame(p, "bad\xfe\xff", "/x.py", "x.py", -3, PROFILE_FRAME_PYTHON),
        profile_frame(p, "ok", "/x.py", "x.py", 1, PROFILE_FRAME_PYTHON),
    };
    profile_add(p, t, f, 2, 300, 0);
    profile_add(p, t, NULL, 0, 4, 0);  /* an empty stack is no sample */
    struct decoded_profile d;
    render_and_decode(p, NULL, &d);
    assert_int_equal(d.period, 0);
    assert_int_equal(d.ncomments, 0);
    char *samples = describe_samples(&d);
    assert_string_equal(samples, "thread_id=9 pid=7 thread_name=bad\xef\xbf\xbd name | "
                                 "bad\xef\xbf\xbd\xef\xbf\xbd (x.py:-3);ok (x.py:1) | 300 0\n");
    free(samples);
    free_decoded(&d);
    profile_free(p);

    p = profile_new();  /* empty: still a valid, decodable profile */
    render_and_decode(p, NULL, &d);
    assert_int_equal(d.nsamples, 0);
    assert_int_equal(d.nsample_types, 2);
    assert_string_equal(d.strings[0], "");
    free_decoded(&d);
    profile_free(p);
}

/* A stack deep enough and a profile big enough to exercise multi-chunk
 * compression and long varints. */
static void test_pprof_large_profile(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    p->meta.rate_hz = 1000;
    uint32_t t = profile_thread(p, 1, 1, 1, NULL);
    uint32_t frames[40];
    char name[32];
    for (uint32_t i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "f%u", i);
        frames[i] = profile_frame(p, name, "/deep.py", "deep.py", (int)(i * 1000 + 1),
                                  PROFILE_FRAME_PYTHON);
    }
    for (uint32_t depth = 1; depth <= 40; depth++)
        profile_add(p, t, frames, depth, (uint64_t)depth << 33, depth);
    struct decoded_profile d;
    render_and_decode(p, NULL, &d);
    assert_int_equal(d.nsamples, 40);
    for (size_t i = 0; i < d.nsamples; i++) {
        const struct decoded_sample *s = &d.samples[i];
        uint64_t depth = s->nlocations;
        assert_int_equal(s->values[0], depth << 33);
        assert_int_equal(s->values[1], (depth << 33) * 1000000);
        for (size_t k = 0; k < s->nlocations; k++) {
            char label[64], want[64];
            location_label(&d, s->locations[k], label, sizeof label);
            size_t level = depth - 1 - k;  /* leaf first */
            snprintf(want, sizeof want, "f%zu (deep.py:%zu)", level, level * 1000 + 1);
            assert_string_equal(label, want);
        }
    }
    free_decoded(&d);
    profile_free(p);
}

/* ---------------------------------------------------------------------------
 * chrometrace.
 * ------------------------------------------------------------------------- */

static json_t *parse_json(const char *text)
{
    json_error_t error;
    json_t *root = json_loads(text, 0, &error);
    if (root == NULL)
        fail_msg("invalid JSON at line %d: %s", error.line, error.text);
    return root;
}

static uint64_t json_ns(const json_t *v)
{
    assert_true(json_is_number(v));
    double us = json_number_value(v);
    assert_true(us >= 0);
    return (uint64_t)(us * 1000.0 + 0.5);
}

struct event_interval {
    uint64_t tid, start, end;
};

static int compare_intervals(const void *a, const void *b)
{
    const struct event_interval *x = a, *y = b;
    if (x->tid != y->tid)
        return x->tid < y->tid ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->end > y->end ? -1 : x->end < y->end;  /* longer (outer) first */
}

/* Shape of every event; slices on each thread nest (no partial overlaps).
 * Returns the number of X events. */
static size_t check_trace_shape(const json_t *root)
{
    const json_t *events = json_object_get(root, "traceEvents");
    assert_true(json_is_array(events));
    assert_string_equal(json_string_value(json_object_get(root, "displayTimeUnit")), "ms");
    assert_true(json_is_object(json_object_get(root, "otherData")));
    size_t n = json_array_size(events), nx = 0;
    struct event_interval *slices = calloc(n ? n : 1, sizeof *slices);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(events, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        assert_non_null(ph);
        assert_true(json_is_integer(json_object_get(e, "pid")));
        assert_true(json_is_integer(json_object_get(e, "tid")));
        assert_true(json_is_number(json_object_get(e, "ts")));
        assert_true(json_is_string(json_object_get(e, "name")));
        if (strcmp(ph, "M") == 0) {
            assert_true(json_is_string(json_object_get(json_object_get(e, "args"), "name")));
            continue;
        }
        assert_string_equal(ph, "X");
        assert_true(json_is_number(json_object_get(e, "dur")));
        slices[nx].tid = (uint64_t)json_integer_value(json_object_get(e, "tid"));
        slices[nx].start = json_ns(json_object_get(e, "ts"));
        slices[nx].end = slices[nx].start + json_ns(json_object_get(e, "dur"));
        nx++;
    }
    qsort(slices, nx, sizeof *slices, compare_intervals);
    uint64_t open_end[256];
    size_t depth = 0;
    for (size_t i = 0; i < nx; i++) {
        if (i > 0 && slices[i].tid != slices[i - 1].tid)
            depth = 0;
        while (depth > 0 && open_end[depth - 1] <= slices[i].start)
            depth--;
        if (depth > 0 && slices[i].end > open_end[depth - 1])
            fail_msg("slice [%llu, %llu) on tid %llu overlaps its enclosing slice ending %llu",
                     (unsigned long long)slices[i].start, (unsigned long long)slices[i].end,
                     (unsigned long long)slices[i].tid, (unsigned long long)open_end[depth - 1]);
        assert_true(depth < 256);
        open_end[depth++] = slices[i].end;
    }
    free(slices);
    return nx;
}

static void test_chrometrace_slices(void **state)
{
    (void)state;
    struct profile *p = make_profile();
    char *text = render_to_buffer(render_chrometrace, p, NULL, NULL);
    json_t *root = parse_json(text);
    assert_int_equal(check_trace_shape(root), 11);

    const json_t *other = json_object_get(root, "otherData");
    assert_string_equal(json_string_value(json_object_get(other, "program")),
                        "python3 app.py \"q\"");
    assert_string_equal(json_string_value(json_object_get(other, "python_version")), "3.12.1");
    assert_float_equal(json_number_value(json_object_get(other, "rate_hz")), 100, 1e-9);

    const json_t *events = json_object_get(root, "traceEvents");
    char *lines[64];
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(events); i++) {
        const json_t *e = json_array_get(events, i);
        char line[512];
        const char *ph = json_string_value(json_object_get(e, "ph"));
        json_int_t pid = json_integer_value(json_object_get(e, "pid"));
        json_int_t tid = json_integer_value(json_object_get(e, "tid"));
        if (strcmp(ph, "M") == 0) {
            snprintf(line, sizeof line, "M %lld %lld %s=%s", (long long)pid, (long long)tid,
                     json_string_value(json_object_get(e, "name")),
                     json_string_value(json_object_get(json_object_get(e, "args"), "name")));
        } else {
            const json_t *args = json_object_get(e, "args");
            char where[128] = "";
            if (args)
                snprintf(where, sizeof where, " %s:%lld",
                         json_string_value(json_object_get(args, "file")),
                         (long long)json_integer_value(json_object_get(args, "line")));
            snprintf(line, sizeof line, "X %lld %lld %s [%s] %llu+%llu%s", (long long)pid,
                     (long long)tid, json_string_value(json_object_get(e, "name")),
                     json_string_value(json_object_get(e, "cat")),
                     (unsigned long long)json_ns(json_object_get(e, "ts")) / MS,
                     (unsigned long long)json_ns(json_object_get(e, "dur")) / MS, where);
        }
        assert_true(n < 64);
        lines[n++] = strdup(line);
    }
    char *all = sorted_join(lines, n);
    assert_string_equal(all,
        "M 4242 1001 thread_name=MainThread\n"
        "M 4242 139637976727554 thread_name=Thread 139637976727554\n"
        "M 4242 4242 process_name=python3 app.py \"q\"\n"
        "X 4242 1001 leaf (app.py) [python] 0+20 /srv/app.py:30\n"
        "X 4242 1001 leaf (app.py) [python] 40+10 /srv/app.py:30\n"
        "X 4242 1001 main (app.py) [python] 0+50 /srv/app.py:10\n"
        "X 4242 1001 other (app.py) [python] 30+10 /srv/app.py:40\n"
        "X 4242 1001 work (app.py) [python] 0+30 /srv/app.py:20\n"
        "X 4242 1001 work (app.py) [python] 40+10 /srv/app.py:20\n"
        "X 4242 139637976727554 rec (rec.py) [python] 0+10 /srv/rec.py:5\n"
        "X 4242 139637976727554 rec (rec.py) [python] 0+10 /srv/rec.py:6\n"
        "X 4242 139637976727554 rec (rec.py) [python] 0+10 /srv/rec.py:6\n"
        "X 4242 139637976727554 worker (lib/w.py) [python] 10+20 /srv/lib/w.py:5\n"
        "X 4242 139637976727554 日本 [native] 10+20\n");
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(all);
    json_decref(root);
    free(text);
    profile_free(p);
}

/* Events are written thread by thread, each thread's in start order with
 * parents before children, and times keep their nanoseconds. */
static void test_chrometrace_order_and_precision(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    p->meta.rate_hz = 3;  /* period 333333333 ns */
    uint32_t t = profile_thread(p, 1, 1, 11, "w\"q");
    uint32_t a = profile_frame(p, "a", "/a.py", "a.py", 1, PROFILE_FRAME_PYTHON);
    uint32_t b = profile_frame(p, "b", "/a.py", "a.py", 2, PROFILE_FRAME_PYTHON);
    uint32_t ab[] = { a, b };
    profile_add(p, t, ab, 2, 1, 1234567);
    profile_add(p, t, ab, 1, 1, 1234567 + 333333333);
    profile_add(p, t, ab, 2, 1, 5000000001ULL);  /* after a gap: a stays open */
    char *text = render_to_buffer(render_chrometrace, p, NULL, NULL);
    json_t *root = parse_json(text);
    assert_int_equal(check_trace_shape(root), 3);
    assert_non_null(strstr(text, "\"ts\":1234.567,\"dur\":5332098.767"));  /* a */
    assert_non_null(strstr(text, "\"ts\":1234.567,\"dur\":333333.333"));   /* b, first */
    assert_non_null(strstr(text, "\"ts\":5000000.001,\"dur\":333333.333")); /* b, again */
    assert_true(strstr(text, "\"name\":\"a (a.py)\"") < strstr(text, "\"name\":\"b (a.py)\""));
    assert_non_null(strstr(text, "\"args\":{\"name\":\"w\\\"q\"}"));
    json_decref(root);
    free(text);
    profile_free(p);

    p = profile_new();  /* empty: valid JSON with a named process */
    text = render_to_buffer(render_chrometrace, p, NULL, NULL);
    root = parse_json(text);
    assert_int_equal(check_trace_shape(root), 0);
    assert_int_equal(json_array_size(json_object_get(root, "traceEvents")), 1);
    json_decref(root);
    free(text);
    profile_free(p);
}

/* ---------------------------------------------------------------------------
 * pstats, read by Python's pstats module.
 * ------------------------------------------------------------------------- */

static const char PSTATS_DUMP[] =
    "import json, pstats, sys, io\n"
    "s = pstats.Stats(sys.argv[1], stream=io.StringIO())\n"
    "s.sort_stats('cumulative').print_stats()\n"
    "s.print_callers()\n"
    "r = lambda x: round(x, 9)\n"
    "out = []\n"
    "for k in sorted(s.stats):\n"
    "    cc, nc, tt, ct, callers = s.stats[k]\n"
    "    cs = sorted([list(c) + [v[0], v[1], r(v[2]), r(v[3])] for c, v in callers.items()])\n"
    "    out.append([list(k), cc, nc, r(tt), r(ct), cs])\n"
    "print(json.dumps({'total_tt': r(s.total_tt), 'stats': out}, ensure_ascii=False))\n";

/* Render p as pstats into a file, load it with Python, return its summary. */
static char *pstats_summary(const struct profile *p)
{
    size_t len;
    char *data = render_to_buffer(render_pstats, p, NULL, &len);
    char path[] = "/tmp/pyrometer-test-XXXXXX.prof";
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    free(data);

    char script_path[] = "/tmp/pyrometer-test-XXXXXX.py";
    fd = mkstemps(script_path, 3);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, PSTATS_DUMP, strlen(PSTATS_DUMP)), (ssize_t)strlen(PSTATS_DUMP));
    close(fd);

    char command[256];
    snprintf(command, sizeof command, "/usr/bin/python3 %s %s", script_path, path);
    FILE *pipe = popen(command, "r");
    assert_non_null(pipe);
    char *out = NULL;
    size_t cap = 0;
    ssize_t n = getline(&out, &cap, pipe);
    int status = pclose(pipe);
    unlink(path);
    unlink(script_path);
    if (status != 0 || n <= 0)
        fail_msg("python's pstats could not load the file (status %d)", status);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

static void test_pstats_loads_with_exact_values(void **state)
{
    (void)state;
    struct profile *p = make_profile();
    char *summary = pstats_summary(p);
    assert_string_equal(summary,
        "{\"total_tt\": 0.08, \"stats\": ["
        "[[\"/srv/app.py\", 10, \"main\"], 5, 5, 0.0, 0.05, []], "
        "[[\"/srv/app.py\", 20, \"work\"], 4, 4, 0.01, 0.04, "
            "[[\"/srv/app.py\", 10, \"main\", 4, 4, 0.01, 0.04]]], "
        "[[\"/srv/app.py\", 30, \"leaf\"], 3, 3, 0.03, 0.03, "
            "[[\"/srv/app.py\", 20, \"work\", 3, 3, 0.03, 0.03]]], "
        "[[\"/srv/app.py\", 40, \"other\"], 1, 1, 0.01, 0.01, "
            "[[\"/srv/app.py\", 10, \"main\", 1, 1, 0.01, 0.01]]], "
        "[[\"/srv/lib/w.py\", 5, \"worker\"], 2, 2, 0.0, 0.02, []], "
        "[[\"/srv/rec.py\", 5, \"rec\"], 1, 1, 0.01, 0.01, "
            "[[\"/srv/rec.py\", 5, \"rec\", 1, 1, 0.01, 0.01]]], "
        "[[\"~\", 0, \"日本\"], 2, 2, 0.02, 0.02, "
            "[[\"/srv/lib/w.py\", 5, \"worker\", 2, 2, 0.02, 0.02]]]]}");
    free(summary);
    profile_free(p);
}

static void test_pstats_big_counts_bad_utf8_and_empty(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    p->meta.rate_hz = 0;  /* unknown rate: one "second" per sample */
    uint32_t t = profile_thread(p, 1, 1, 1, NULL);
    uint32_t f[2] = {
        profile_frame(p, "outer", "/o\xff.py", "o.py", 3, PROFILE_FRAME_PYTHON),
        profile_frame(p, "inner\xfe", "/o\xff.py", "o.py", 9, PROFILE_FRAME_PYTHON),
    };
    profile_add(p, t, f, 2, 5000000000ULL, 0);  /* beyond int32: marshal 'l' */
    profile_add(p, t, f, 1, 1, 1);
    char *summary = pstats_summary(p);
    assert_string_equal(summary,
        "{\"total_tt\": 5000000001.0, \"stats\": ["
        "[[\"/o\xef\xbf\xbd.py\", 3, \"outer\"], 5000000001, 5000000001, 1.0, 5000000001.0, []], "
        "[[\"/o\xef\xbf\xbd.py\", 9, \"inner\xef\xbf\xbd\"], 5000000000, 5000000000, "
            "5000000000.0, 5000000000.0, "
            "[[\"/o\xef\xbf\xbd.py\", 3, \"outer\", 5000000000, 5000000000, 5000000000.0, "
            "5000000000.0]]]]}");
    free(summary);
    profile_free(p);

    p = profile_new();
    summary = pstats_summary(p);
    assert_string_equal(summary, "{\"total_tt\": 0.0, \"stats\": "
                                 "[[[\"~\", 0, \"<no samples>\"], 0, 0, 0.0, 0.0, []]]}");
    free(summary);
    profile_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_table),
        cmocka_unit_test(test_dispatch_matches_direct_calls),
        cmocka_unit_test(test_write_errors_are_reported),
        cmocka_unit_test(test_pprof_round_trip),
        cmocka_unit_test(test_pprof_cleans_utf8_and_handles_odd_values),
        cmocka_unit_test(test_pprof_large_profile),
        cmocka_unit_test(test_chrometrace_slices),
        cmocka_unit_test(test_chrometrace_order_and_precision),
        cmocka_unit_test(test_pstats_loads_with_exact_values),
        cmocka_unit_test(test_pstats_big_counts_bad_utf8_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
