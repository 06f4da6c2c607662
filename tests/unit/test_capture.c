/*
 * test_capture.c — the memory capture format: a round trip through the
 * writer, the reader and the replay (peak, leaks, allocs, frames, lines);
 * truncation at every length of a small capture and at chosen points of a
 * two-window one (a killed target, a full disk) keeps every whole record
 * before the cut; a flipped byte ends the capture at its chunk; garbage is
 * refused with PM_EFORMAT.
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

static uint64_t g_last;

static void add_event(struct capture_writer *w, uint8_t tag, uint64_t addr, uint64_t size,
                      uint64_t stack)
{
    uint8_t rec[40];
    size_t k = 0;
    rec[k++] = tag;
    k += capture_put_s(rec + k, (int64_t)(addr - g_last));
    g_last = addr;
    if (tag == CAPTURE_ALLOC || tag == CAPTURE_MMAP || tag == CAPTURE_MUNMAP)
        k += capture_put_u(rec + k, size);
    if (tag == CAPTURE_ALLOC || tag == CAPTURE_MMAP)
        k += capture_put_u(rec + k, stack);
    add(w, rec, k);
}

/* A capture: two functions under main; grow() holds 10 MiB at the peak,
 * churn() 1000 x 1 KiB freed before; leaky() keeps 4 KiB until FINALIZING. */
static void write_sample(const char *path, int with_end, size_t extra_events)
{
    struct capture_writer w;
    uint8_t rec[256];
    size_t k;
    g_last = 0;
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
    for (uint64_t i = 0; i < 1000; i++)
        add_event(&w, CAPTURE_ALLOC, 0x100000 + i * 2048, 1024, 3);
    for (uint64_t i = 0; i < 1000; i++)
        add_event(&w, CAPTURE_FREE, 0x100000 + i * 2048, 0, 0);
    add_event(&w, CAPTURE_MMAP, 0x7f0000000000, 10u << 20, 2);
    add_event(&w, CAPTURE_ALLOC, 0x200000, 4096, 4);
    add_event(&w, CAPTURE_MUNMAP, 0x7f0000000000, 10u << 20, 0);
    /* more traffic (to fill windows) that leaves nothing behind */
    for (size_t i = 0; i < extra_events; i++) {
        add_event(&w, CAPTURE_ALLOC, 0x300000 + (i % 64) * 64, 64, 1);
        add_event(&w, CAPTURE_FREE, 0x300000 + (i % 64) * 64, 0, 0);
    }
    rec[0] = CAPTURE_FINALIZING;
    add(&w, rec, 1);
    add_event(&w, CAPTURE_FREE, 0x200000, 0, 0);
    if (with_end) {
        rec[0] = CAPTURE_END;
        add(&w, rec, 1);
    }
    capture_writer_close(&w);
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
    uint64_t previous = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, whole, cut);
        struct replay r;
        int rc = replay_buffer(copy, cut, &r, &err);
        if (cut < CAPTURE_HEADER_SIZE + CAPTURE_CHUNK_HEADER) {
            assert_int_equal(rc, -1);
            assert_int_equal(err.code, PM_EFORMAT);
        } else {
            assert_int_equal(rc, 0);
            assert_true(r.events <= all);
            assert_true(r.events >= previous || cut == len);
            /* a cut inside the chunk loses the chunk (its length says more) */
            if (cut < len)
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
static void test_killed_and_disk_full(void **state)
{
    (void)state;
    write_sample(g_path, 0, 600000);   /* > 4 MiB of records: two windows */
    size_t len;
    uint8_t *whole = slurp(g_path, &len);
    assert_true(len > CAPTURE_WINDOW_DEFAULT);
    struct replay r;
    struct pm_error err = {0};
    assert_int_equal(replay_buffer(whole, len, &r, &err), 0);
    assert_true(r.truncated);   /* no END record */
    assert_false(r.ended);
    assert_int_equal(r.peak_bytes, (10u << 20) + 4096);
    assert_int_equal(r.leak_bytes, 4096);
    uint64_t all = r.events;
    replay_free(&r);
    /* zeros after the data, as a killed writer leaves them */
    uint8_t *padded = calloc(1, 2 * CAPTURE_WINDOW_DEFAULT);
    memcpy(padded, whole, len);
    assert_int_equal(replay_buffer(padded, 2 * CAPTURE_WINDOW_DEFAULT, &r, &err), 0);
    assert_int_equal(r.events, all);
    replay_free(&r);
    free(padded);
    /* only the first window (disk full when the second was reserved) */
    assert_int_equal(replay_buffer(whole, CAPTURE_WINDOW_DEFAULT, &r, &err), 0);
    assert_true(r.truncated);
    assert_true(r.events > 1000 && r.events < all);
    assert_int_equal(r.totals[2].peak_bytes, 10u << 20);
    replay_free(&r);
    /* a flipped byte in the second window's payload: the first window stays */
    whole[CAPTURE_WINDOW_DEFAULT + CAPTURE_CHUNK_HEADER + 5] ^= 0x40;
    assert_int_equal(replay_buffer(whole, len, &r, &err), 0);
    assert_true(r.truncated);
    assert_non_null(strstr(r.truncated_why, "checksum"));
    assert_true(r.events > 1000 && r.events < all);
    replay_free(&r);
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_and_disk_full, setup, teardown),
        cmocka_unit_test(test_garbage_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
