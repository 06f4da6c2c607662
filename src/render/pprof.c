/*
 * pprof.c — the pprof format: a gzip-compressed protocol buffer of message
 * perftools.profiles.Profile (github.com/google/pprof, proto/profile.proto),
 * what `pprof`, `go tool pprof`, Pyroscope and most profile viewers read.
 *
 * Owns a small hand-written protobuf encoder (varints, length-delimited
 * fields, packed repeated integers) and the gzip stream (zlib) it feeds.
 * The field numbers below are the ones profile.proto fixes; they never change.
 *
 * What goes in:
 *   - sample_type [samples/count, cpu/nanoseconds]; period_type cpu/nanoseconds
 *     and period = 1e9 / rate (0 when the rate is unknown);
 *   - one Sample per profile stack: location ids LEAF FIRST, values
 *     [count, count * period], and labels thread_id (kernel TID, or the
 *     interpreter's id when unknown), pid, and thread_name when known;
 *   - one Function per (name, file): name and system_name are the function's
 *     name, filename is the short file (the full path with --full-filenames,
 *     as in every other format), start_line is the smallest line seen for it;
 *   - one Location per (function, line) with a single Line entry; no Mapping
 *     (Python code has no address ranges);
 *   - time_nanos, duration_nanos, and comments naming the program and the
 *     Python version.
 * Strings are cleaned to valid UTF-8 (protobuf strings must be); index 0 of
 * the string table is "".
 *
 * The message is streamed: each top-level field is encoded into a scratch
 * buffer and handed to the compressor, so memory holds one sub-message at a
 * time plus the id tables, never the whole encoded profile.
 *
 * Sees only the aggregated profile; never reads process memory, never prints
 * to the terminal; writes only to the FILE it is given.
 */
#include "render.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* perftools.profiles field numbers. */
enum {
    PROFILE_SAMPLE_TYPE = 1, PROFILE_SAMPLE = 2, PROFILE_LOCATION = 4,
    PROFILE_FUNCTION = 5, PROFILE_STRING_TABLE = 6, PROFILE_TIME_NANOS = 9,
    PROFILE_DURATION_NANOS = 10, PROFILE_PERIOD_TYPE = 11, PROFILE_PERIOD = 12,
    PROFILE_COMMENT = 13,
    VALUE_TYPE_TYPE = 1, VALUE_TYPE_UNIT = 2,
    SAMPLE_LOCATION_ID = 1, SAMPLE_VALUE = 2, SAMPLE_LABEL = 3,
    LABEL_KEY = 1, LABEL_STR = 2, LABEL_NUM = 3,
    LOCATION_ID = 1, LOCATION_LINE = 4,
    LINE_FUNCTION_ID = 1, LINE_LINE = 2,
    FUNCTION_ID = 1, FUNCTION_NAME = 2, FUNCTION_SYSTEM_NAME = 3,
    FUNCTION_FILENAME = 4, FUNCTION_START_LINE = 5,
};

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

/* ---- protobuf encoding into a growable buffer ---------------------------- */

struct pb_buf {
    unsigned char *data;
    size_t len, cap;
    int failed;  /* out of memory: later writes are dropped */
};

static int pb_reserve(struct pb_buf *b, size_t more)
{
    if (b->failed)
        return -1;
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    unsigned char *data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Encode a varint into `out` (room for 10 bytes); returns its length. */
static size_t varint_encode(uint64_t v, unsigned char *out)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (unsigned char)v;
    return n;
}

static void pb_varint(struct pb_buf *b, uint64_t v)
{
    if (pb_reserve(b, 10) == 0)
        b->len += varint_encode(v, b->data + b->len);
}

static void pb_key(struct pb_buf *b, unsigned field, unsigned wire)
{
    pb_varint(b, ((uint64_t)field << 3) | wire);
}

/* A varint field (uint64, or int64 as its two's complement); proto3 omits
 * zeros, and so do we. */
static void pb_uint(struct pb_buf *b, unsigned field, uint64_t v)
{
    if (v == 0)
        return;
    pb_key(b, field, WIRE_VARINT);
    pb_varint(b, v);
}

static void pb_int(struct pb_buf *b, unsigned field, int64_t v)
{
    pb_uint(b, field, (uint64_t)v);
}

static void pb_bytes(struct pb_buf *b, unsigned field, const void *data, size_t len)
{
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, len);
    if (pb_reserve(b, len) != 0)
        return;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

/* A packed repeated varint field (empty: omitted). */
static void pb_packed(struct pb_buf *b, unsigned field, const uint64_t *values, size_t n)
{
    if (n == 0)
        return;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += varint_size(values[i]);
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, len);
    for (size_t i = 0; i < n; i++)
        pb_varint(b, values[i]);
}

/* ---- the gzip stream ------------------------------------------------------ */

struct gzip_writer {
    z_stream z;
    FILE *out;
    int failed;  /* zlib refused (out of memory); write errors are the FILE's */
};

static int gzip_open(struct gzip_writer *gz, FILE *out)
{
    memset(gz, 0, sizeof *gz);
    gz->out = out;
    /* windowBits 15 + 16: a gzip header and trailer around the deflate data. */
    if (deflateInit2(&gz->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        gz->failed = 1;
        return -1;
    }
    return 0;
}

/* Compress `len` bytes (flush: Z_NO_FLUSH, or Z_FINISH to end the stream). */
static void gzip_write(struct gzip_writer *gz, const void *data, size_t len, int flush)
{
    unsigned char chunk[16384];
    if (gz->failed)
        return;
    gz->z.next_in = (unsigned char *)(uintptr_t)data;
    gz->z.avail_in = (uInt)len;  /* callers pass sub-messages far below 4 GiB */
    for (;;) {
        gz->z.next_out = chunk;
        gz->z.avail_out = sizeof chunk;
        int rc = deflate(&gz->z, flush);
        if (rc == Z_STREAM_ERROR) {
            gz->failed = 1;
            return;
        }
        size_t produced = sizeof chunk - gz->z.avail_out;
        if (produced > 0 && fwrite(chunk, 1, produced, gz->out) != produced)
            return;  /* reported by render_finish */
        if (flush == Z_FINISH ? rc == Z_STREAM_END
                              : gz->z.avail_in == 0 && gz->z.avail_out != 0)
            return;
    }
}

/* Hand a top-level length-delimited field (tag, length, `msg`) to the gzip
 * stream, and empty `msg` for the next one. */
static void emit_message(struct gzip_writer *gz, unsigned field, struct pb_buf *msg)
{
    if (msg->failed) {
        gz->failed = 1;
        return;
    }
    unsigned char head[20];
    size_t n = varint_encode(((uint64_t)field << 3) | WIRE_LEN, head);
    n += varint_encode(msg->len, head + n);
    gzip_write(gz, head, n, Z_NO_FLUSH);
    gzip_write(gz, msg->data, msg->len, Z_NO_FLUSH);
    msg->len = 0;
}

/* A top-level varint field (zero: omitted, as proto3 does). */
static void emit_varint(struct gzip_writer *gz, unsigned field, uint64_t v)
{
    if (v == 0)
        return;
    unsigned char bytes[20];
    size_t n = varint_encode(((uint64_t)field << 3) | WIRE_VARINT, bytes);
    n += varint_encode(v, bytes + n);
    gzip_write(gz, bytes, n, Z_NO_FLUSH);
}

/* ---- the id tables -------------------------------------------------------- */

/* The pprof string table: entries point into the profile's strings or at
 * literals/comments that outlive the render. */
struct string_table {
    const char **entries;
    size_t n, cap;
    uint32_t *index_of;  /* per profile string id: index here, 0 = not yet */
    int failed;
};

static uint64_t table_add(struct string_table *t, const char *s)
{
    if (t->failed)
        return 0;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        const char **entries = realloc(t->entries, cap * sizeof *entries);
        if (entries == NULL) {
            t->failed = 1;
            return 0;
        }
        t->entries = entries;
        t->cap = cap;
    }
    t->entries[t->n] = s;
    return t->n++;
}

/* The table index of profile string `sid` (adding it on first use). */
static uint64_t table_profile_string(struct string_table *t, const struct profile *p,
                                     uint32_t sid)
{
    if (sid >= p->nstrings || p->strings[sid][0] == '\0')
        return 0;
    if (t->index_of[sid] == 0)
        t->index_of[sid] = (uint32_t)table_add(t, p->strings[sid]);
    return t->index_of[sid];
}

struct pprof_function {
    uint32_t name, file;  /* profile string ids */
    int32_t start_line;   /* smallest positive line seen, 0 if none */
};

struct pprof_location {
    uint32_t function;  /* 1-based function id */
    int32_t line;
};

struct frame_key {
    uint32_t a, b;   /* sort key (a, b) */
    int32_t line;    /* third key, for locations */
    uint32_t frame;
};

static int compare_frame_keys(const void *x, const void *y)
{
    const struct frame_key *l = x, *r = y;
    if (l->a != r->a)
        return l->a < r->a ? -1 : 1;
    if (l->b != r->b)
        return l->b < r->b ? -1 : 1;
    if (l->line != r->line)
        return l->line < r->line ? -1 : 1;
    return l->frame < r->frame ? -1 : l->frame > r->frame;
}

/* The file a frame names: the short file, or the full path with
 * --full-filenames, falling back to the other when empty. */
static uint32_t frame_file(const struct profile *p, const struct profile_frame *f,
                           int full_filenames)
{
    uint32_t first = full_filenames ? f->filename : f->short_file;
    uint32_t second = full_filenames ? f->short_file : f->filename;
    return profile_str(p, first)[0] ? first : second;
}

struct pprof_tables {
    struct pprof_function *functions;  /* functions[id - 1] */
    uint32_t nfunctions;
    struct pprof_location *locations;  /* locations[id - 1] */
    uint32_t nlocations;
    uint32_t *location_of_frame;       /* per frame: 1-based location id */
};

/* Number functions by (name, file) and locations by (function, line), both
 * in a deterministic sorted order.  Returns 0 or -1 (out of memory). */
static int build_tables(const struct profile *p, int full_filenames, struct pprof_tables *t)
{
    size_t n = p->nframes ? p->nframes : 1;
    struct frame_key *keys = malloc(n * sizeof *keys);
    uint32_t *function_of_frame = malloc(n * sizeof *function_of_frame);
    t->functions = malloc(n * sizeof *t->functions);
    t->locations = malloc(n * sizeof *t->locations);
    t->location_of_frame = malloc(n * sizeof *t->location_of_frame);
    t->nfunctions = t->nlocations = 0;
    if (keys == NULL || function_of_frame == NULL || t->functions == NULL ||
        t->locations == NULL || t->location_of_frame == NULL) {
        free(keys);
        free(function_of_frame);
        return -1;
    }

    for (uint32_t i = 0; i < p->nframes; i++)
        keys[i] = (struct frame_key){ p->frames[i].name,
                                      frame_file(p, &p->frames[i], full_filenames), 0, i };
    qsort(keys, p->nframes, sizeof *keys, compare_frame_keys);
    for (uint32_t i = 0; i < p->nframes; i++) {
        int32_t line = p->frames[keys[i].frame].line;
        if (i == 0 || keys[i].a != keys[i - 1].a || keys[i].b != keys[i - 1].b)
            t->functions[t->nfunctions++] = (struct pprof_function){ keys[i].a, keys[i].b, 0 };
        struct pprof_function *fn = &t->functions[t->nfunctions - 1];
        if (line > 0 && (fn->start_line == 0 || line < fn->start_line))
            fn->start_line = line;
        function_of_frame[keys[i].frame] = t->nfunctions;
    }

    for (uint32_t i = 0; i < p->nframes; i++)
        keys[i] = (struct frame_key){ function_of_frame[i], 0, p->frames[i].line, i };
    qsort(keys, p->nframes, sizeof *keys, compare_frame_keys);
    for (uint32_t i = 0; i < p->nframes; i++) {
        if (i == 0 || keys[i].a != keys[i - 1].a || keys[i].line != keys[i - 1].line)
            t->locations[t->nlocations++] = (struct pprof_location){ keys[i].a, keys[i].line };
        t->location_of_frame[keys[i].frame] = t->nlocations;
    }
    free(keys);
    free(function_of_frame);
    return 0;
}

static void free_tables(struct pprof_tables *t)
{
    free(t->functions);
    free(t->locations);
    free(t->location_of_frame);
}

/* ---- the profile ---------------------------------------------------------- */

struct label_keys {
    uint64_t thread_id, thread_name, pid;
};

static void encode_value_type(struct pb_buf *b, uint64_t type, uint64_t unit)
{
    pb_uint(b, VALUE_TYPE_TYPE, type);
    pb_uint(b, VALUE_TYPE_UNIT, unit);
}

static void encode_label(struct pb_buf *b, struct pb_buf *scratch, uint64_t key,
                         uint64_t str, int64_t num)
{
    scratch->len = 0;
    pb_uint(scratch, LABEL_KEY, key);
    pb_uint(scratch, LABEL_STR, str);
    pb_int(scratch, LABEL_NUM, num);
    if (scratch->failed)
        b->failed = 1;
    else
        pb_bytes(b, SAMPLE_LABEL, scratch->data, scratch->len);
}

/* One Sample for stack `s`; `ids` has room for s->depth location ids. */
static void encode_sample(struct pb_buf *b, struct pb_buf *scratch, const struct profile *p,
                          const struct pprof_tables *t, const struct profile_stack *s,
                          uint64_t period, struct string_table *strings,
                          const struct label_keys *keys, uint64_t *ids)
{
    const uint32_t *frames = profile_stack_frames(p, s);
    for (uint32_t i = 0; i < s->depth; i++)
        ids[i] = t->location_of_frame[frames[s->depth - 1 - i]];
    pb_packed(b, SAMPLE_LOCATION_ID, ids, s->depth);
    uint64_t values[2] = { s->count, s->count * period };
    pb_packed(b, SAMPLE_VALUE, values, 2);
    if (s->thread < p->nthreads) {
        const struct profile_thread *th = &p->threads[s->thread];
        uint64_t tid = th->os_thread_id ? th->os_thread_id : th->thread_id;
        encode_label(b, scratch, keys->thread_id, 0, (int64_t)tid);
        encode_label(b, scratch, keys->pid, 0, th->pid);
        uint64_t name = table_profile_string(strings, p, th->name);
        if (name != 0)
            encode_label(b, scratch, keys->thread_name, name, 0);
    }
}

/* Everything but the string table, which is emitted last (protobuf allows
 * any order; the table is complete only once every reference is made). */
static void emit_profile(struct gzip_writer *gz, const struct profile *p,
                         const struct pprof_tables *t, struct string_table *strings,
                         struct pb_buf *msg, struct pb_buf *scratch)
{
    uint64_t samples = table_add(strings, "samples"), count = table_add(strings, "count");
    uint64_t cpu = table_add(strings, "cpu"), nanos = table_add(strings, "nanoseconds");
    struct label_keys keys = { table_add(strings, "thread_id"),
                               table_add(strings, "thread_name"), table_add(strings, "pid") };
    double rate = p->meta.rate_hz;
    uint64_t period = rate > 0 ? (uint64_t)llround(1e9 / rate) : 0;

    encode_value_type(msg, samples, count);
    emit_message(gz, PROFILE_SAMPLE_TYPE, msg);
    encode_value_type(msg, cpu, nanos);
    emit_message(gz, PROFILE_SAMPLE_TYPE, msg);

    uint32_t max_depth = 0;
    for (uint32_t i = 0; i < p->nstacks; i++)
        if (p->stacks[i].depth > max_depth)
            max_depth = p->stacks[i].depth;
    uint64_t *ids = malloc((max_depth ? max_depth : 1) * sizeof *ids);
    if (ids == NULL) {
        gz->failed = 1;
        return;
    }
    for (uint32_t i = 0; i < p->nstacks && !gz->failed; i++) {
        const struct profile_stack *s = &p->stacks[i];
        if (s->count == 0 || s->depth == 0)
            continue;
        encode_sample(msg, scratch, p, t, s, period, strings, &keys, ids);
        emit_message(gz, PROFILE_SAMPLE, msg);
    }
    free(ids);

    for (uint32_t i = 0; i < t->nlocations && !gz->failed; i++) {
        scratch->len = 0;
        pb_uint(scratch, LINE_FUNCTION_ID, t->locations[i].function);
        pb_int(scratch, LINE_LINE, t->locations[i].line);
        pb_uint(msg, LOCATION_ID, (uint64_t)i + 1);
        if (scratch->failed)
            msg->failed = 1;
        else
            pb_bytes(msg, LOCATION_LINE, scratch->data, scratch->len);
        emit_message(gz, PROFILE_LOCATION, msg);
    }
    for (uint32_t i = 0; i < t->nfunctions && !gz->failed; i++) {
        const struct pprof_function *fn = &t->functions[i];
        uint64_t name = table_profile_string(strings, p, fn->name);
        pb_uint(msg, FUNCTION_ID, (uint64_t)i + 1);
        pb_uint(msg, FUNCTION_NAME, name);
        pb_uint(msg, FUNCTION_SYSTEM_NAME, name);
        pb_uint(msg, FUNCTION_FILENAME, table_profile_string(strings, p, fn->file));
        pb_int(msg, FUNCTION_START_LINE, fn->start_line);
        emit_message(gz, PROFILE_FUNCTION, msg);
    }

    emit_varint(gz, PROFILE_TIME_NANOS, p->meta.start_unix_ns);
    emit_varint(gz, PROFILE_DURATION_NANOS, p->meta.duration_ns);
    encode_value_type(msg, cpu, nanos);
    emit_message(gz, PROFILE_PERIOD_TYPE, msg);
    emit_varint(gz, PROFILE_PERIOD, period);
}

/* Comments: the program and the Python version, when known.  `texts` holds
 * them for the string table (which only points at them). */
static void emit_comments(struct gzip_writer *gz, const struct profile *p,
                          struct string_table *strings, char texts[2][320])
{
    size_t n = 0;
    if (p->meta.program[0])
        snprintf(texts[n++], sizeof texts[0], "program: %s", p->meta.program);
    if (p->meta.python_version[0])
        snprintf(texts[n++], sizeof texts[0], "Python %s", p->meta.python_version);
    for (size_t i = 0; i < n; i++)
        emit_varint(gz, PROFILE_COMMENT, table_add(strings, texts[i]));
}

static void emit_string_table(struct gzip_writer *gz, const struct string_table *strings,
                              struct pb_buf *msg)
{
    for (size_t i = 0; i < strings->n && !gz->failed; i++) {
        char *clean = render_utf8_clean(strings->entries[i]);
        if (clean == NULL) {
            gz->failed = 1;
            return;
        }
        pb_bytes(msg, PROFILE_STRING_TABLE, clean, strlen(clean));
        free(clean);
        /* A repeated string is a sequence of top-level fields: pass the
         * buffered ones on now and then, not one by one. */
        if (msg->len >= 65536 || i + 1 == strings->n) {
            if (msg->failed) {
                gz->failed = 1;
                return;
            }
            gzip_write(gz, msg->data, msg->len, Z_NO_FLUSH);
            msg->len = 0;
        }
    }
}

int render_pprof(const struct profile *p, const struct render_opts *o, FILE *out,
                 struct pm_error *err)
{
    int full_filenames = o ? o->full_filenames : 0;
    struct pprof_tables tables = { 0 };
    struct string_table strings = { 0 };
    struct pb_buf msg = { 0 }, scratch = { 0 };
    struct gzip_writer gz;
    char comments[2][320];
    int rc = -1;

    strings.index_of = calloc(p->nstrings ? p->nstrings : 1, sizeof *strings.index_of);
    if (strings.index_of == NULL || build_tables(p, full_filenames, &tables) != 0) {
        pm_fail(err, PM_ENOMEM, "out of memory rendering pprof");
        goto done;
    }
    table_add(&strings, "");  /* index 0 is always "" */
    if (gzip_open(&gz, out) != 0) {
        pm_fail(err, PM_ENOMEM, "out of memory starting the pprof gzip stream");
        goto done;
    }
    emit_profile(&gz, p, &tables, &strings, &msg, &scratch);
    emit_comments(&gz, p, &strings, comments);
    if (strings.failed)
        gz.failed = 1;
    emit_string_table(&gz, &strings, &msg);
    gzip_write(&gz, NULL, 0, Z_FINISH);
    deflateEnd(&gz.z);
    if (gz.failed || msg.failed || scratch.failed) {
        pm_fail(err, PM_ENOMEM, "out of memory encoding pprof");
        goto done;
    }
    rc = render_finish(out, "pprof", err);

done:
    free(strings.index_of);
    free(strings.entries);
    free(msg.data);
    free(scratch.data);
    free_tables(&tables);
    return rc;
}
