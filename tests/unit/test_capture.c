/*
 * test_capture.c — the memory capture format: a round trip through the
 * writer, the reader and the replay (peak, leaks, allocs, frames, lines);
 * truncation at every length of a small capture and at chosen points of a
 * many-block one (a killed target, a full disk) keeps every whole record
 * before the cut; a flipped byte ends the capture at its block; garbage is
 * refused with PM_EFORMAT; threads' streams are read in the order their
 * segments say, whatever the order of their blocks in the file; fixed
 * events (format 3) read back among tagged ones.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "mem/capture.h"
#include "mem/replay.h"

static size_t put_bytes(uint8_t *rec, uint8_t tag, const char *s)
{
    size_t n = strlen(s), k = 0;
    rec[k++] = tag;
    k += capture_put_u(rec + k, n);
    memcpy(rec + k, s, n);
    return k + n;
}

static void add(struct capture_writer *w, const uint8_t *rec, size_t len)
{
    assert_int_equal(capture_writer_add(w, rec, len), 0);
}

/* The events' stream (thread 1), as the tracker writes it. */
static struct capture_stream g_events;
static uint64_t g_last;

static void add_to(struct capture_writer *w, struct capture_stream *s, const uint8_t *rec,
                   size_t len)
{
    assert_int_equal(capture_stream_add(w, s, rec, len), 0);
}

static void add_mark(struct capture_writer *w, struct capture_stream *s, uint64_t seq)
{
    uint8_t rec[16];
    size_t k = 0;
    rec[k++] = CAPTURE_MARK;
    k += capture_put_u(rec + k, seq);
    add_to(w, s, rec, k);
}

/* A tagged ALLOC, FREE, MMAP or MUNMAP record at rec, its address a delta
 * from *last (the previous tagged event's); its length. */
static size_t put_tagged(uint8_t *rec, uint8_t tag, uint64_t addr, uint64_t *last, uint64_t size,
                         uint64_t stack)
{
    size_t k = 0;
    rec[k++] = tag;
    k += capture_put_s(rec + k, (int64_t)(addr - *last));
    *last = addr;
    if (tag == CAPTURE_ALLOC || tag == CAPTURE_MMAP || tag == CAPTURE_MUNMAP)
        k += capture_put_u(rec + k, size);
    if (tag == CAPTURE_ALLOC || tag == CAPTURE_MMAP)
        k += capture_put_u(rec + k, stack);
    return k;
}

static void add_event(struct capture_writer *w, uint8_t tag, uint64_t addr, uint64_t size,
                      uint64_t stack)
{
    uint8_t rec[40];
    add_to(w, &g_events, rec, put_tagged(rec, tag, addr, &g_last, size, stack));
}

/* A capture: two functions under main; grow() holds 10 MiB at the peak,
 * churn() 1000 x 1 KiB freed before (10 of the frees written twice);
 * leaky() keeps 4 KiB until FINALIZING.  SAMPLE_EVENTS: its events before
 * the extra ones (1000 allocations, 1010 frees, a mapping, leaky's block,
 * the unmapping). */
#define SAMPLE_EVENTS (1000 + 1010 + 3)
static void write_sample(const char *path, int with_end, size_t extra_events)
{
    struct capture_writer w;
    uint8_t rec[256];
    size_t k;
    g_last = 0;
    memset(&g_events, 0, sizeof g_events);
    g_events.id = 1;
    assert_int_equal(capture_writer_open(&w, path, CAPTURE_F_PYTHON), 0);
    k = 0;
    rec[k++] = CAPTURE_META;
    k += capture_put_u(rec + k, 3);
    memcpy(rec + k, "pid", 3);
    k += 3;
    k += capture_put_u(rec + k, 4);
    memcpy(rec + k, "4242", 4);
    k += 4;
    add(&w, rec, k);
    add(&w, rec, put_bytes(rec, CAPTURE_STRING, "main"));     /* 1 */
    add(&w, rec, put_bytes(rec, CAPTURE_STRING, "app.py"));   /* 2 */
    add(&w, rec, put_bytes(rec, CAPTURE_STRING, "grow"));     /* 3 */
    add(&w, rec, put_bytes(rec, CAPTURE_STRING, "churn"));    /* 4 */
    add(&w, rec, put_bytes(rec, CAPTURE_STRING, "leaky"));    /* 5 */
    for (int code = 1; code <= 4; code++) {   /* code 1..4: main, grow, churn, leaky */
        k = 0;
        rec[k++] = CAPTURE_CODE;
        k += capture_put_u(rec + k, code == 1 ? 1 : code + 1);
        k += capture_put_u(rec + k, 2);
        k += capture_put_s(rec + k, 10 * code);
        k += capture_put_u(rec + k, 0);
        add(&w, rec, k);
        k = 0;
        rec[k++] = CAPTURE_PYFRAME;   /* frame `code` */
        k += capture_put_u(rec + k, (uint64_t)code);
        k += capture_put_s(rec + k, 0);
        add(&w, rec, k);
    }
    /* stacks: 1 = main, 2 = main;grow, 3 = main;churn, 4 = main;leaky */
    const uint64_t stacks[4][2] = {{0, 1}, {1, 2}, {1, 3}, {1, 4}};
    for (int i = 0; i < 4; i++) {
        k = 0;
        rec[k++] = CAPTURE_STACK;
        k += capture_put_u(rec + k, stacks[i][0]);
        k += capture_put_u(rec + k, stacks[i][1]);
        add(&w, rec, k);
    }
    k = 0;
    rec[k++] = CAPTURE_THREAD;
    k += capture_put_u(rec + k, 1);
    k += capture_put_u(rec + k, 4242);
    add(&w, rec, k);
    add_mark(&w, &g_events, 1);
    for (uint64_t i = 0; i < 1000; i++)
        add_event(&w, CAPTURE_ALLOC, 0x100000 + i * 2048, 1024, 3);
    for (uint64_t i = 0; i < 1000; i++) {
        add_event(&w, CAPTURE_FREE, 0x100000 + i * 2048, 0, 0);
        /* a block pymalloc hands to free(): its free is written twice (the
         * tracker's unguarded free hook, then the interposed free) */
        if (i % 100 == 0)
            add_event(&w, CAPTURE_FREE, 0x100000 + i * 2048, 0, 0);
    }
    add_event(&w, CAPTURE_MMAP, 0x7f0000000000, 10u << 20, 2);
    add_event(&w, CAPTURE_ALLOC, 0x200000, 4096, 4);
    add_event(&w, CAPTURE_MUNMAP, 0x7f0000000000, 10u << 20, 0);
    /* more traffic (to fill blocks) that leaves nothing behind */
    for (size_t i = 0; i < extra_events; i++) {
        add_event(&w, CAPTURE_ALLOC, 0x300000 + (i % 64) * 64, 64, 1);
        add_event(&w, CAPTURE_FREE, 0x300000 + (i % 64) * 64, 0, 0);
    }
    rec[0] = CAPTURE_FINALIZING;
    add_to(&w, &g_events, rec, 1);
    add_event(&w, CAPTURE_FREE, 0x200000, 0, 0);
    if (with_end) {
        rec[0] = CAPTURE_END;
        add(&w, rec, 1 + capture_put_u(rec + 1, w.end));
    }
    if (with_end)
        capture_writer_close(&w, &g_events);
    else
        capture_writer_abandon(&w);   /* killed: the last blocks stay unsealed */
    capture_stream_abandon(&g_events);
}

static char g_path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_path, sizeof g_path, "/tmp/pyrometer-test-capture-%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_path);
    return 0;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

/* END, the writer closed with s as its last stream, and the file read
 * back. */
static uint8_t *finish(struct capture_writer *w, struct capture_stream *s, size_t *len)
{
    uint8_t rec[16];
    rec[0] = CAPTURE_END;
    add(w, rec, 1 + capture_put_u(rec + 1, w->end));
    capture_writer_close(w, s);
    return slurp(g_path, len);
}

/* As finish, with s the writer's last stream and `other` sealed after it. */
static uint8_t *finish_two(struct capture_writer *w, struct capture_stream *s,
                           struct capture_stream *other, size_t *len)
{
    uint8_t rec[16];
    rec[0] = CAPTURE_END;
    add(w, rec, 1 + capture_put_u(rec + 1, w->end));
    capture_writer_close(w, s);
    capture_stream_seal(w, other);
    return slurp(g_path, len);
}

static void test_round_trip(void **state)
{
    (void)state;
    write_sample(g_path, 1, 0);
    struct replay r;
    struct pm_error err = {0};
    assert_int_equal(replay_run(g_path, &r, NULL, NULL, &err), 0);
    assert_int_equal(r.pid, 4242);
    assert_true(r.ended);
    assert_true(r.finalizing);
    assert_false(r.truncated);
    assert_int_equal(r.nframes, 4);
    assert_int_equal(r.nstacks, 4);
    assert_string_equal(r.frames[2].name, "grow");
    assert_string_equal(r.frames[2].filename, "app.py");
    assert_int_equal(r.stacks[2].parent, 1);
    assert_int_equal(r.stacks[2].depth, 2);
    /* the peak: 10 MiB of grow's mapping plus leaky's 4 KiB, nothing of churn */
    assert_int_equal(r.peak_bytes, (10u << 20) + 4096);
    assert_int_equal(r.totals[2].peak_bytes, 10u << 20);
    assert_int_equal(r.totals[3].peak_bytes, 0);
    assert_int_equal(r.totals[4].peak_bytes, 4096);
    /* allocs: churn's 1000 x 1 KiB */
    assert_int_equal(r.totals[3].alloc_bytes, 1000 * 1024);
    assert_int_equal(r.totals[3].alloc_count, 1000);
    /* leaks at FINALIZING: leaky's block, freed only afterwards */
    assert_int_equal(r.leak_bytes, 4096);
    assert_int_equal(r.totals[4].leak_bytes, 4096);
    assert_int_equal(r.totals[2].leak_bytes, 0);
    assert_int_equal(r.end_bytes, 0);
    assert_int_equal(r.alloc_events, 1002);
    replay_free(&r);
}

/* Every cut of a small capture opens or fails cleanly, and never reads more
 * records than the whole. */
static void test_truncated_everywhere(void **state)
{
    (void)state;
    write_sample(g_path, 1, 0);
    size_t len;
    uint8_t *whole = slurp(g_path, &len);
    struct capture_file f;
    struct pm_error err = {0};
    assert_int_equal(capture_open_buffer(whole, len, &f, &err), 0);
    struct capture_record rec;
    uint64_t all = 0;
    while (capture_next(&f, &rec))
        all++;
    assert_false(f.truncated);
    capture_close(&f);   /* the index is ours; the buffer is not */
    uint64_t previous = 0;
    for (size_t cut = 0; cut <= len; cut += cut < CAPTURE_ALIGN + 64 ? 1 : 7) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, whole, cut);
        struct replay r;
        int rc = replay_buffer(copy, cut, &r, &err);
        if (cut < CAPTURE_HEADER_SIZE) {
            assert_int_equal(rc, -1);
            assert_int_equal(err.code, PM_EFORMAT);
        } else {
            assert_int_equal(rc, 0);
            assert_true(r.events <= all);
            assert_true(r.events >= previous);
            /* whatever is lost is said to be */
            if (r.events < all)
                assert_true(r.truncated);
            previous = r.events;
        }
        replay_free(&r);
        free(copy);
    }
    free(whole);
}

/* A killed target: the file keeps its reserved window of zeros after the
 * last record and has no END; a full disk: the second window is missing. */
/* The offsets of the blocks of a capture in memory (at most max). */
static size_t block_offsets(const uint8_t *buf, size_t len, size_t *out, size_t max)
{
    size_t n = 0;
    for (size_t off = CAPTURE_ALIGN; off + CAPTURE_BLOCK_HEADER <= len && n < max;) {
        uint32_t magic, size;
        memcpy(&magic, buf + off, 4);
        memcpy(&size, buf + off + 8, 4);
        if (magic != CAPTURE_BLOCK_MAGIC && magic != CAPTURE_WINDOW_MAGIC)
            break;
        if (magic == CAPTURE_BLOCK_MAGIC)
            out[n++] = off;
        off += size;
    }
    return n;
}

/* A killed target: no END, the last blocks unsealed, zeros after the last
 * record; a full disk: the blocks after some point are missing; a flipped
 * byte in a sealed block ends the capture there. */
static void test_killed_and_disk_full(void **state)
{
    (void)state;
    write_sample(g_path, 0, 600000);   /* > 4 MiB of records: many blocks */
    size_t len;
    uint8_t *whole = slurp(g_path, &len);
    size_t offs[64];
    size_t nblocks = block_offsets(whole, len, offs, 64);
    assert_true(nblocks >= 6);
    struct replay r;
    struct pm_error err = {0};
    assert_int_equal(replay_buffer(whole, len, &r, &err), 0);
    assert_true(r.truncated);   /* no END record */
    assert_non_null(strstr(r.truncated_why, "no end record"));
    assert_false(r.ended);
    assert_int_equal(r.peak_bytes, (10u << 20) + 4096);
    assert_int_equal(r.leak_bytes, 4096);
    assert_int_equal(r.end_bytes, 0);
    uint64_t all = r.events;
    /* META, 5 STRING, 4 CODE, 4 PYFRAME, 4 STACK, THREAD; the events */
    assert_int_equal(all, 1 + 5 + 4 + 4 + 4 + 1 + SAMPLE_EVENTS + 2 * 600000 + 2);
    replay_free(&r);
    /* zeros after the data, as a killed writer leaves them */
    uint8_t *padded = calloc(1, len + (1u << 20));
    memcpy(padded, whole, len);
    assert_int_equal(replay_buffer(padded, len + (1u << 20), &r, &err), 0);
    assert_int_equal(r.events, all);
    replay_free(&r);
    free(padded);
    /* only the first four blocks (disk full when the fifth was reserved) */
    assert_int_equal(replay_buffer(whole, offs[4], &r, &err), 0);
    assert_true(r.truncated);
    assert_true(r.events > 2000 && r.events < all);
    assert_int_equal(r.totals[2].peak_bytes, 10u << 20);
    replay_free(&r);
    /* a flipped byte in the fifth block's (sealed) payload: the four before stay */
    uint32_t sealed;
    memcpy(&sealed, whole + offs[4] + 20, 4);
    assert_int_equal(sealed, 1);
    whole[offs[4] + CAPTURE_BLOCK_HEADER + 5] ^= 0x40;
    assert_int_equal(replay_buffer(whole, len, &r, &err), 0);
    assert_true(r.truncated);
    assert_non_null(strstr(r.truncated_why, "checksum"));
    assert_true(r.events > 2000 && r.events < all);
    replay_free(&r);
    free(whole);
}

/* Two threads whose blocks are in the file in the opposite order of their
 * segments: thread 2's block comes first, but thread 1 allocated and freed
 * X, then thread 2 allocated X (it got the freed block), then thread 1 freed
 * Y that thread 2 had allocated in between. */
/* A writer that cannot grow its file (RLIMIT_FSIZE: EFBIG, where a full
 * disk gives ENOSPC) stops, and says why in the header: the report names
 * the cause instead of "no end record", and reads what was written. */
static void test_stopped_writer_says_why(void **state)
{
    (void)state;
    struct rlimit old, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
    small = old;
    small.rlim_cur = 1u << 20;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    struct capture_writer w;
    assert_int_equal(capture_writer_open(&w, g_path, CAPTURE_F_PYTHON), 0);
    struct capture_stream t1 = {.id = 1};
    add_mark(&w, &t1, 1);
    uint8_t rec[32];
    uint64_t written = 0;
    for (uint64_t i = 0; i < 1000000; i++) {
        uint64_t a = 0x10000 + (i % 100) * 64;
        if (capture_stream_add(&w, &t1, rec, capture_put_fixed_alloc(rec, a, 64, 0)) != 0)
            break;
        written++;
        if (capture_stream_add(&w, &t1, rec, capture_put_fixed_free(rec, a)) != 0)
            break;
    }
    assert_true(w.failed);
    assert_int_equal(w.fail_errno, EFBIG);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, was);
    capture_writer_abandon(&w);
    capture_stream_abandon(&t1);
    size_t len;
    uint8_t *whole = slurp(g_path, &len);
    assert_true(len <= 1u << 20);
    uint32_t stopped;
    memcpy(&stopped, whole + 24, 4);
    assert_int_equal(stopped, EFBIG);
    struct replay r;
    struct pm_error err = {0};
    assert_int_equal(replay_buffer(whole, len, &r, &err), 0);
    assert_true(r.truncated);
    assert_string_equal(r.truncated_why, "the recording stopped when the capture could not grow "
                                         "(it reached the largest file size allowed): everything "
                                         "before is reported");
    assert_true(r.alloc_events > 10000 && r.alloc_events <= written);
    replay_free(&r);
    /* another errno: named by the C library */
    stopped = ENOMEM;
    memcpy(whole + 24, &stopped, 4);
    assert_int_equal(replay_buffer(whole, len, &r, &err), 0);
    assert_non_null(strstr(r.truncated_why, "writing the capture failed (Cannot allocate memory)"));
    replay_free(&r);
    free(whole);
}

static void test_threads_in_segment_order(void **state)
{
    (void)state;
    struct capture_writer w;
    uint8_t rec[64];
    size_t k;
    assert_int_equal(capture_writer_open(&w, g_path, CAPTURE_F_PYTHON), 0);
    add(&w, rec, put_bytes(rec, CAPTURE_STRING, "f"));
    k = 0;
    rec[k++] = CAPTURE_CODE;
    k += capture_put_u(rec + k, 1);
    k += capture_put_u(rec + k, 1);
    k += capture_put_s(rec + k, 1);
    k += capture_put_u(rec + k, 0);
    add(&w, rec, k);
    k = 0;
    rec[k++] = CAPTURE_PYFRAME;
    k += capture_put_u(rec + k, 1);
    k += capture_put_s(rec + k, 0);
    add(&w, rec, k);
    k = 0;
    rec[k++] = CAPTURE_STACK;
    k += capture_put_u(rec + k, 0);
    k += capture_put_u(rec + k, 1);
    add(&w, rec, k);
    struct capture_stream t1 = {.id = 1}, t2 = {.id = 2};
    const uint64_t X = 0x5000, Y = 0x9000;
    /* thread 2 (its block first in the file): segment 2 allocates X then Y */
    uint64_t last2 = 0, last1 = 0;   /* each stream's delta base */
    add_mark(&w, &t2, 2);
    add_to(&w, &t2, rec, put_tagged(rec, CAPTURE_ALLOC, X, &last2, 100, 1));
    add_to(&w, &t2, rec, put_tagged(rec, CAPTURE_ALLOC, Y, &last2, 1000, 1));
    /* thread 1: segment 1 allocates X (50) and frees it; segment 3 frees Y */
    add_mark(&w, &t1, 1);
    add_to(&w, &t1, rec, put_tagged(rec, CAPTURE_ALLOC, X, &last1, 50, 1));
    add_to(&w, &t1, rec, put_tagged(rec, CAPTURE_FREE, X, &last1, 0, 0));
    add_mark(&w, &t1, 3);
    add_to(&w, &t1, rec, put_tagged(rec, CAPTURE_FREE, Y, &last1, 0, 0));
    size_t len;
    uint8_t *whole = finish_two(&w, &t1, &t2, &len);
    size_t offs[8];
    assert_int_equal(block_offsets(whole, len, offs, 8), 3);
    uint32_t first_stream;
    memcpy(&first_stream, whole + offs[1] + 12, 4);
    assert_int_equal(first_stream, 2);   /* thread 2's block is before thread 1's */
    struct capture_file f;
    struct pm_error err = {0};
    assert_int_equal(capture_open_buffer(whole, len, &f, &err), 0);
    struct capture_record r;
    uint64_t seen[8][2];
    int n = 0;
    while (capture_next(&f, &r))
        if (r.tag == CAPTURE_ALLOC || r.tag == CAPTURE_FREE) {
            assert_true(n < 8);
            seen[n][0] = r.addr;
            seen[n++][1] = r.stream;
        }
    assert_false(f.truncated);
    assert_int_equal(n, 5);
    /* alloc X, free X (thread 1); alloc X, alloc Y (thread 2); free Y (thread 1) */
    const uint64_t want[5][2] = {{X, 1}, {X, 1}, {X, 2}, {Y, 2}, {Y, 1}};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(seen[i][0], want[i][0]);
        assert_int_equal(seen[i][1], want[i][1]);
    }
    capture_close(&f);
    struct replay rp;
    assert_int_equal(replay_buffer(whole, len, &rp, &err), 0);
    assert_int_equal(rp.peak_bytes, 1100);
    assert_int_equal(rp.end_bytes, 100);   /* thread 2's X is still held */
    assert_int_equal(rp.threads, 0);
    replay_free(&rp);
    free(whole);
}

/* A damaged ALLOC at address 0 (the tracker never writes one; 0 also marks a
 * free slot of the replay's table) is skipped: it must not count in the peak
 * without counting in any stack (the capture fuzzer found that). */
static void test_alloc_at_zero_skipped(void **state)
{
    (void)state;
    struct capture_writer w;
    uint8_t rec[64];
    assert_int_equal(capture_writer_open(&w, g_path, CAPTURE_F_PYTHON), 0);
    struct capture_stream t1 = {.id = 1};
    add_mark(&w, &t1, 1);
    const uint64_t addrs[3] = {0, 0x5000, 0};
    const uint64_t sizes[3] = {500, 100, 700};
    uint64_t last = 0;
    for (int i = 0; i < 3; i++)
        add_to(&w, &t1, rec, put_tagged(rec, CAPTURE_ALLOC, addrs[i], &last, sizes[i], 0));
    size_t len;
    uint8_t *whole = finish(&w, &t1, &len);
    struct replay rp;
    struct pm_error err = {0};
    assert_int_equal(replay_buffer(whole, len, &rp, &err), 0);
    assert_int_equal(rp.peak_bytes, 100);
    assert_int_equal(rp.totals[0].peak_bytes, 100);
    assert_int_equal(rp.end_bytes, 100);
    assert_int_equal(rp.alloc_events, 1);
    replay_free(&rp);
    free(whole);
}

/* Fixed events (capture.h, format 3) mixed with tagged ones: addresses,
 * sizes and stacks read back as written; a fixed event leaves the tagged
 * events' delta base alone; a cut fixed event is dropped whole; a first
 * byte with an unknown kind in its low bits is a malformed record. */
/* A new capture at g_path with one stack of no frame (id 1). */
static void open_with_stack(struct capture_writer *w)
{
    uint8_t rec[16];
    size_t k = 0;
    assert_int_equal(capture_writer_open(w, g_path, CAPTURE_F_PYTHON), 0);
    rec[k++] = CAPTURE_STACK;
    k += capture_put_u(rec + k, 0);
    k += capture_put_u(rec + k, 0);
    add(w, rec, k);
}

/* The capture in buf reads with no ALLOC or FREE, stopped at a malformed
 * record. */
static void no_events_malformed(const uint8_t *buf, size_t len)
{
    struct capture_file f;
    struct capture_record r;
    struct pm_error err = {0};
    assert_int_equal(capture_open_buffer(buf, len, &f, &err), 0);
    int n = 0;
    while (capture_next(&f, &r))
        n += r.tag == CAPTURE_ALLOC || r.tag == CAPTURE_FREE;
    assert_int_equal(n, 0);
    assert_true(f.truncated);
    assert_non_null(strstr(f.why, "malformed record"));
    capture_close(&f);
}

static void test_fixed_events(void **state)
{
    (void)state;
    struct capture_writer w;
    uint8_t rec[64];
    open_with_stack(&w);                                 /* stack 1 */
    struct capture_stream t1 = {.id = 1};
    add_mark(&w, &t1, 1);
    const uint64_t A = 0x7f1234567890ULL, ODD = 0x1003, B = 0x10000, HIGH = 1ULL << 48;
    uint64_t last = 0;
    add_to(&w, &t1, rec, capture_put_fixed_alloc(rec, A, 100, 1));
    /* not a multiple of 8: tagged */
    add_to(&w, &t1, rec, put_tagged(rec, CAPTURE_ALLOC, ODD, &last, 7, 1));
    add_to(&w, &t1, rec, capture_put_fixed_free(rec, A));
    /* delta 0: from ODD, not A */
    add_to(&w, &t1, rec, put_tagged(rec, CAPTURE_FREE, ODD, &last, 0, 0));
    add_to(&w, &t1, rec, capture_put_fixed_alloc(rec, B, 0xfffffffeULL, 0));
    add_to(&w, &t1, rec, capture_put_fixed_free(rec, B));
    /* 2^48: tagged */
    add_to(&w, &t1, rec, put_tagged(rec, CAPTURE_ALLOC, HIGH, &last, 5, 1));
    size_t len;
    uint8_t *whole = finish(&w, &t1, &len);
    struct capture_file f;
    struct pm_error err = {0};
    assert_int_equal(capture_open_buffer(whole, len, &f, &err), 0);
    struct capture_record r;
    const struct {
        int tag, fixed;
        uint64_t addr, size, stack;
    } want[7] = {{CAPTURE_ALLOC, 1, A, 100, 1},   {CAPTURE_ALLOC, 0, ODD, 7, 1},
                 {CAPTURE_FREE, 1, A, 0, 0},      {CAPTURE_FREE, 0, ODD, 0, 0},
                 {CAPTURE_ALLOC, 1, B, 0xfffffffeULL, 0}, {CAPTURE_FREE, 1, B, 0, 0},
                 {CAPTURE_ALLOC, 0, HIGH, 5, 1}};
    int n = 0;
    while (capture_next(&f, &r)) {
        if (r.tag != CAPTURE_ALLOC && r.tag != CAPTURE_FREE)
            continue;
        assert_true(n < 7);
        assert_int_equal(r.tag, want[n].tag);
        assert_int_equal(r.fixed, want[n].fixed);
        assert_int_equal(r.addr, want[n].addr);
        if (r.tag == CAPTURE_ALLOC) {
            assert_int_equal(r.a, want[n].size);
            assert_int_equal(r.b, want[n].stack);
        }
        n++;
    }
    assert_int_equal(n, 7);
    assert_false(f.truncated);
    capture_close(&f);
    struct replay rp;
    assert_int_equal(replay_buffer(whole, len, &rp, &err), 0);
    assert_int_equal(rp.peak_bytes, 0xfffffffeULL);
    assert_int_equal(rp.end_bytes, 5);
    replay_free(&rp);

    /* the thread's block: MARK(1) (2 bytes), then the fixed ALLOC of A */
    size_t offs[8];
    assert_int_equal(block_offsets(whole, len, offs, 8), 2);
    uint8_t *payload = whole + offs[1] + CAPTURE_BLOCK_HEADER;
    assert_int_equal(payload[0], CAPTURE_MARK);
    assert_int_equal(payload[2] & CAPTURE_FIXED_MASK, CAPTURE_FIXED_ALLOC);
    /* cut inside the fixed ALLOC (the block unsealed, as a killed target
     * leaves it): nothing of it is read */
    uint32_t used = 2 + 9, sealed = 0;
    memcpy(whole + offs[1] + 4, &used, 4);
    memcpy(whole + offs[1] + 20, &sealed, 4);
    assert_int_equal(capture_open_buffer(whole, len, &f, &err), 0);
    n = 0;
    while (capture_next(&f, &r))
        n += r.tag == CAPTURE_ALLOC || r.tag == CAPTURE_FREE;
    assert_int_equal(n, 0);
    assert_true(f.truncated);
    capture_close(&f);
    /* an unknown kind (low bits 5) where the fixed ALLOC starts */
    used = 2 + 14;
    memcpy(whole + offs[1] + 4, &used, 4);
    payload[2] = (uint8_t)((payload[2] & ~CAPTURE_FIXED_MASK) | 5);
    no_events_malformed(whole, len);
    free(whole);
}

/* FREE4 and ALLOC8 take their address's upper half from their own
 * stream's last FREE6 or ALLOC14 (0 before the first), across segments and
 * whichever stream the reader is in; a version-5 capture has no short
 * events. */
static void test_short_events(void **state)
{
    (void)state;
    struct capture_writer w;
    uint8_t rec[64];
    open_with_stack(&w);                                 /* stack 1 */
    struct capture_stream t1 = {.id = 1}, t2 = {.id = 2};
    const uint64_t LOW = 0x5008, A1 = 0x7f1200000010ULL, A2 = 0x7f1200fffff8ULL,
                   B1 = 0x55aa00000020ULL, B2 = 0x55aa12345678ULL, C = 0x7f1300000040ULL;
    const uint32_t SMAX = CAPTURE_ALLOC8_STACK_MAX;
    /* segment 1, thread 1: short events before any long one (upper half 0) */
    add_mark(&w, &t1, 1);
    add_to(&w, &t1, rec, capture_put_fixed_alloc8(rec, LOW, 1, 0));
    add_to(&w, &t1, rec, capture_put_fixed_free4(rec, LOW));
    add_to(&w, &t1, rec, capture_put_fixed_alloc(rec, A1, 600, 1));   /* upper half 0x7f12 */
    add_to(&w, &t1, rec, capture_put_fixed_alloc8(rec, A2, 512, SMAX));
    /* segment 2, thread 2: its own upper half */
    add_mark(&w, &t2, 2);
    add_to(&w, &t2, rec, capture_put_fixed_free(rec, B1));           /* upper half 0x55aa */
    add_to(&w, &t2, rec, capture_put_fixed_alloc8(rec, B2, 24, 7));
    /* segment 3, thread 1 again: still 0x7f12, until a long event moves it */
    add_mark(&w, &t1, 3);
    add_to(&w, &t1, rec, capture_put_fixed_free4(rec, A2));
    add_to(&w, &t1, rec, capture_put_fixed_alloc(rec, C, 8, 1));     /* upper half 0x7f13 */
    add_to(&w, &t1, rec, capture_put_fixed_free4(rec, C));
    add_to(&w, &t1, rec, capture_put_fixed_free4(rec, A1 & 0xffffffffULL));   /* 0x7f1300000010 */
    size_t len;
    uint8_t *whole = finish_two(&w, &t1, &t2, &len);

    const struct {
        int tag, fixed;
        uint64_t addr, size, stack;
    } want[] = {{CAPTURE_ALLOC, 2, LOW, 1, 0},      {CAPTURE_FREE, 2, LOW, 0, 0},
                {CAPTURE_ALLOC, 1, A1, 600, 1},     {CAPTURE_ALLOC, 2, A2, 512, SMAX},
                {CAPTURE_FREE, 1, B1, 0, 0},        {CAPTURE_ALLOC, 2, B2, 24, 7},
                {CAPTURE_FREE, 2, A2, 0, 0},        {CAPTURE_ALLOC, 1, C, 8, 1},
                {CAPTURE_FREE, 2, C, 0, 0},         {CAPTURE_FREE, 2, 0x7f1300000010ULL, 0, 0}};
    const int nwant = (int)(sizeof want / sizeof want[0]);
    struct capture_file f;
    struct pm_error err = {0};
    struct capture_record r;
    for (int pass = 0; pass < 2; pass++) {   /* the second after a rewind */
        if (pass == 0)
            assert_int_equal(capture_open_buffer(whole, len, &f, &err), 0);
        else
            capture_rewind(&f);
        int n = 0;
        while (capture_next(&f, &r)) {
            if (r.tag != CAPTURE_ALLOC && r.tag != CAPTURE_FREE)
                continue;
            assert_true(n < nwant);
            assert_int_equal(r.tag, want[n].tag);
            assert_int_equal(r.fixed, want[n].fixed);
            assert_int_equal(r.addr, want[n].addr);
            assert_int_equal(r.stream, n >= 4 && n < 6 ? 2 : 1);
            if (r.tag == CAPTURE_ALLOC) {
                assert_int_equal(r.a, want[n].size);
                assert_int_equal(r.b, want[n].stack);
            }
            n++;
        }
        assert_int_equal(n, nwant);
        assert_false(f.truncated);
    }
    capture_close(&f);
    struct replay rp;
    assert_int_equal(replay_buffer(whole, len, &rp, &err), 0);
    /* live at the end: A1 (600) and B2 (24); at the peak also A2 (512) */
    assert_int_equal(rp.end_bytes, 624);
    assert_int_equal(rp.peak_bytes, 1136);
    replay_free(&rp);

    /* the same bytes as version 5: a short event is malformed there */
    uint32_t v5 = 5;
    memcpy(whole + 8, &v5, 4);
    no_events_malformed(whole, len);
    free(whole);
}

static void test_garbage_refused(void **state)
{
    (void)state;
    uint8_t junk[256];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    struct replay r;
    struct pm_error err = {0};
    assert_int_equal(replay_buffer(junk, sizeof junk, &r, &err), -1);
    assert_int_equal(err.code, PM_EFORMAT);
    assert_non_null(strstr(err.msg, "not a pyrometer memory capture"));
    replay_free(&r);
    /* right magic, another version */
    memcpy(junk, CAPTURE_MAGIC, 8);
    uint32_t v = 99;
    memcpy(junk + 8, &v, 4);
    assert_int_equal(replay_buffer(junk, sizeof junk, &r, &err), -1);
    assert_non_null(strstr(err.msg, "version 99"));
    replay_free(&r);
    v = 2;   /* format 2 (varint events only): no reader kept */
    memcpy(junk + 8, &v, 4);
    assert_int_equal(replay_buffer(junk, sizeof junk, &r, &err), -1);
    assert_non_null(strstr(err.msg, "version 2 is not supported (this pyrometer reads versions 3 to 6)"));
    replay_free(&r);
}

/* The window of stream `stream` that holds records (upto > from): its
 * offset, or 0. */
static size_t window_with_records(const uint8_t *buf, size_t len, uint32_t stream)
{
    for (size_t off = CAPTURE_ALIGN; off + CAPTURE_BLOCK_HEADER <= len;) {
        uint32_t h[6];
        memcpy(h, buf + off, sizeof h);
        if (h[0] != CAPTURE_BLOCK_MAGIC && h[0] != CAPTURE_WINDOW_MAGIC)
            break;
        if (h[0] == CAPTURE_WINDOW_MAGIC && h[3] == stream && h[1] > h[5])
            return off;
        off += h[2];
    }
    return 0;
}

static uint64_t events_in(const uint8_t *buf, size_t len)
{
    struct replay r;
    struct pm_error err = {0};
    assert_int_equal(replay_buffer(buf, len, &r, &err), 0);
    uint64_t n = r.events;
    replay_free(&r);
    return n;
}

/* A killed target's last records are in its window only: read from there,
 * once, whatever instant of a window copy the kill fell on; a window that
 * names a block its stream has gone past, or holds garbage, is not read. */
static void test_windows_of_killed_target(void **state)
{
    (void)state;
    /* enough events that the last block has had a window copied into it */
    size_t len = 0, wo = 0, extra = 0;
    uint8_t *whole = NULL;
    uint32_t upto = 0, from = 0, bidx = 0, used;
    for (extra = 600000; from == 0 && extra < 800000; extra += 10000) {
        free(whole);
        write_sample(g_path, 0, extra);
        whole = slurp(g_path, &len);
        wo = window_with_records(whole, len, 1);
        assert_true(wo != 0);
        memcpy(&upto, whole + wo + 4, 4);
        memcpy(&bidx, whole + wo + 16, 4);
        memcpy(&from, whole + wo + 20, 4);
    }
    const uint64_t all = 1 + 5 + 4 + 4 + 4 + 1 + SAMPLE_EVENTS + 2 * (extra - 10000) + 2;
    size_t bo = (size_t)bidx * CAPTURE_ALIGN;
    memcpy(&used, whole + bo + 4, 4);
    assert_true(from > 0);            /* windows were copied into this block before */
    assert_int_equal(used, from);     /* and the block has all but the window's records */
    assert_int_equal(events_in(whole, len), all);

    /* killed after the copy and the block's used, before the window restarted */
    uint8_t *copied = malloc(len);
    memcpy(copied, whole, len);
    uint32_t data;
    memcpy(&data, whole + wo + 24, 4);
    assert_true(data >= CAPTURE_WINDOW_HEAD && data < CAPTURE_WINDOW_SIZE);
    memcpy(copied + bo + CAPTURE_BLOCK_HEADER + from, whole + wo + data, upto - from);
    memcpy(copied + bo + 4, &upto, 4);
    assert_int_equal(events_in(copied, len), all);

    /* an empty window: what the window alone held is gone */
    memcpy(copied, whole, len);
    memcpy(copied + wo + 4, &from, 4);
    uint64_t without = events_in(copied, len);
    assert_true(without < all);
    /* a window naming the stream's first block (not its last): not read */
    size_t offs[64];
    size_t nblocks = block_offsets(whole, len, offs, 64);
    uint32_t first = 0;
    for (size_t i = 0; i < nblocks && first == 0; i++) {
        uint32_t st;
        memcpy(&st, whole + offs[i] + 12, 4);
        if (st == 1)
            first = (uint32_t)(offs[i] / CAPTURE_ALIGN);
    }
    assert_true(first != 0 && first != bidx);
    memcpy(copied, whole, len);
    memcpy(copied + wo + 16, &first, 4);
    assert_int_equal(events_in(copied, len), without);
    /* garbage where the window's records start: the capture ends there */
    memcpy(copied, whole, len);
    copied[wo + data] = 31 << 3;
    struct replay r;
    struct pm_error err = {0};
    assert_int_equal(replay_buffer(copied, len, &r, &err), 0);
    assert_true(r.truncated);
    assert_int_equal(r.events, without);
    replay_free(&r);
    free(copied);
    free(whole);
}

/* The text of a NOTE record of len bytes (of 129 for 130: no NOTE is 130
 * bytes long, its length's varint grows from one byte to two there). */
static size_t note_text(size_t len)
{
    return len - 2 <= 127 ? len - 2 : len - 3;
}

/* Records of every length from 1 to 300 bytes, about 3 MiB of them: they
 * read back whole and in order (the zero bytes padding each chunk's end
 * are passed over); every block of a chunk or more starts on a multiple of
 * CAPTURE_CHUNK and is a multiple of it long; every write into a block but
 * its last is one whole chunk at a chunk's offset. */
static void test_chunks_whole_and_aligned(void **state)
{
    (void)state;
    struct capture_writer w;
    struct capture_stream s = {.id = 1};
    assert_int_equal(capture_writer_open(&w, g_path, CAPTURE_F_PYTHON), 0);
    uint8_t rec[320];
    size_t k = 0;
    rec[k++] = CAPTURE_THREAD;
    k += capture_put_u(rec + k, 1);
    k += capture_put_u(rec + k, 7);
    add(&w, rec, k);
    add_mark(&w, &s, 1);
    const size_t n = 22000;
    for (size_t i = 0; i < n; i++) {
        size_t len = 1 + i % 300;
        if (len < 14) {   /* a fixed allocation where a NOTE would be too short to vary */
            k = capture_put_fixed_alloc(rec, 0x10000 + 8 * i, i, (uint32_t)len);
        } else {
            size_t text = note_text(len);
            k = 0;
            rec[k++] = CAPTURE_NOTE;
            k += capture_put_u(rec + k, text);
            for (size_t j = 0; j < text; j++)
                rec[k++] = (uint8_t)('a' + (i + j) % 26);
            assert_true(k == len || (len == 130 && k == 129));
        }
        add_to(&w, &s, rec, k);
    }
    size_t len;
    uint8_t *whole = finish(&w, &s, &len);
    assert_true(w.copies > 48);
    size_t offs[64];
    size_t nblocks = block_offsets(whole, len, offs, 64);
    size_t big = 0;
    for (size_t b = 0; b < nblocks; b++) {
        uint32_t size;
        memcpy(&size, whole + offs[b] + 8, 4);
        if (size >= CAPTURE_CHUNK) {
            big++;
            assert_int_equal(offs[b] % CAPTURE_CHUNK, 0);
            assert_int_equal(size % CAPTURE_CHUNK, 0);
        }
    }
    assert_true(big >= 2 && nblocks < 64);
    assert_true(w.chunk_copies + nblocks >= w.copies);
    struct capture_file f;
    struct pm_error err = {0};
    assert_int_equal(capture_open_buffer(whole, len, &f, &err), 0);
    struct capture_record r;
    size_t i = 0;
    while (capture_next(&f, &r)) {
        if (r.stream != 1)
            continue;
        size_t want = 1 + i % 300;
        if (want < 14) {
            assert_int_equal(r.tag, CAPTURE_ALLOC);
            assert_int_equal(r.addr, 0x10000 + 8 * i);
            assert_int_equal(r.a, i);
            assert_int_equal(r.b, want);
        } else {
            assert_int_equal(r.tag, CAPTURE_NOTE);
            assert_int_equal(r.len, note_text(want));
            for (size_t j = 0; j < r.len; j++)
                assert_int_equal(r.data[j], 'a' + (i + j) % 26);
        }
        i++;
    }
    assert_int_equal(i, n);
    assert_false(f.truncated);
    capture_close(&f);
    free(whole);
}

/* n bytes of xorshift noise from seed x. */
static void fill_noise(uint8_t *buf, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)(x >> 24);
    }
}

/* The writer's checksum, fed window by window, is the reader's of the
 * whole payload, whatever the pieces. */
static void test_checksum_in_pieces(void **state)
{
    (void)state;
    uint8_t buf[1000];
    fill_noise(buf, sizeof buf, 0x9e3779b97f4a7c15ULL);
    for (size_t n = 0; n <= sizeof buf; n += 37) {
        uint32_t whole = capture_checksum(buf, n);
        for (size_t step = 1; step <= 70; step += 3) {
            struct capture_sum c;
            capture_sum_init(&c);
            for (size_t at = 0; at < n; at += step)
                capture_sum_add(&c, buf + at, n - at < step ? n - at : step);
            assert_int_equal(capture_sum_final(&c), whole);
        }
    }
    assert_int_not_equal(capture_checksum(buf, 64), capture_checksum(buf, 65));
}

/* The block checksum as capture.h defines it, one 64-bit lane at a time:
 * four lanes of little-endian words, each a Fletcher pair, the tail
 * zero-padded, the length and the eight sums mixed at the end. */
static uint32_t checksum_reference(const uint8_t *p, size_t n)
{
    uint64_t a[4] = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, 0xa4093822299f31d0ULL,
                     0x082efa98ec4e6c89ULL};
    uint64_t b[4] = {0, 0, 0, 0};
    for (size_t at = 0; at < n; at += 32) {
        uint8_t step[32] = {0};
        memcpy(step, p + at, n - at < 32 ? n - at : 32);
        for (int l = 0; l < 4; l++) {
            uint64_t w = 0;
            for (int i = 7; i >= 0; i--)
                w = w << 8 | step[8 * l + i];
            a[l] += w;
            b[l] += a[l];
        }
    }
    uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15ULL;
    for (int k = 0; k < 8; k++) {
        h = (h ^ (k < 4 ? a[k] : b[k - 4])) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* The SSE2 and the AVX2 sums (the latter where this CPU has it) are the
 * reference's, at every length up to a few steps and in pieces. */
static void test_checksum_both_codes(void **state)
{
    (void)state;
    uint8_t buf[700];
    fill_noise(buf, sizeof buf, 0x2545f4914f6cdd1dULL);
    int codes = 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    codes = __builtin_cpu_supports("avx2") ? 2 : 1;
#endif
    for (int avx2 = 0; avx2 < codes; avx2++) {
        capture_sum_select(avx2);
        for (size_t n = 0; n <= sizeof buf; n++) {
            uint32_t want = checksum_reference(buf, n);
            assert_int_equal(capture_checksum(buf, n), want);
            struct capture_sum c;
            capture_sum_init(&c);
            for (size_t at = 0; at < n; at += 97)
                capture_sum_add(&c, buf + at, n - at < 97 ? n - at : 97);
            assert_int_equal(capture_sum_final(&c), want);
        }
    }
    if (codes == 1)
        print_message("no AVX2 here: only the portable sums were checked\n");
    capture_sum_select(-1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_and_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_writer_says_why, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_in_segment_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_at_zero_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_events, setup, teardown),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test_setup_teardown(test_windows_of_killed_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunks_whole_and_aligned, setup, teardown),
        cmocka_unit_test(test_checksum_in_pieces),
        cmocka_unit_test(test_checksum_both_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
