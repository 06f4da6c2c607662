/*
 * test_reader.c — memory readers (target/reader.h).
 *
 * The buffer reader at every edge (first and last byte, one past the end,
 * one before the start, addr+len overflowing, address zero, oversized reads,
 * a failed read leaving the output untouched), typed helpers, reader_cstr
 * (truncation, a string ending at the end of readable memory); the remote
 * reader on this process (across a page boundary, large reads, the page
 * cache: the old value within an epoch, the new one after reader_new_epoch,
 * syscall and cache-hit counts; reader_read_fresh going around it), on an unmapped page (PM_EREAD), on a forked
 * child's copy of our memory, and on that child once dead (PM_EGONE).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "target/reader.h"

#define BASE 0x100000ull

/* ---- buffer reader ------------------------------------------------------ */

static void expect_read_fails(struct reader *r, uint64_t addr, size_t len, const char *what)
{
    uint8_t out[80];
    memset(out, 0xa5, sizeof out);
    struct pm_error err = {0};
    assert_true(len <= sizeof out);
    int rc = reader_read(r, addr, out, len, &err);
    if (rc != -1 || err.code != PM_EREAD)
        fail_msg("%s: read of %zu at 0x%llx gave rc %d code %d", what, len,
                 (unsigned long long)addr, rc, (int)err.code);
    for (size_t i = 0; i < sizeof out; i++)
        if (out[i] != 0xa5)
            fail_msg("%s: failed read wrote byte %zu", what, i);
}

static void test_buffer_edges(void **state)
{
    (void)state;
    uint8_t buf[64];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 3 + 1);
    struct reader *r = reader_buffer_new(buf, sizeof buf, BASE);
    assert_non_null(r);
    struct pm_error err = {0};
    uint8_t out[64];

    assert_int_equal(reader_read(r, BASE, out, 64, &err), 0);
    assert_memory_equal(out, buf, 64);
    assert_int_equal(reader_read(r, BASE + 63, out, 1, &err), 0);
    assert_int_equal(out[0], buf[63]);
    assert_int_equal(reader_read(r, BASE + 56, out, 8, &err), 0);
    assert_memory_equal(out, buf + 56, 8);

    expect_read_fails(r, BASE + 64, 1, "one past the end");
    expect_read_fails(r, BASE + 57, 8, "last 8 bytes shifted by one");
    expect_read_fails(r, BASE, 65, "whole buffer plus one");
    expect_read_fails(r, BASE - 1, 1, "one before the start");
    expect_read_fails(r, BASE - 1, 2, "straddling the start");
    expect_read_fails(r, BASE + 1000, 8, "far past the end");
    expect_read_fails(r, UINT64_MAX - 3, 8, "addr + len overflows");
    expect_read_fails(r, UINT64_MAX, 1, "last address");
    expect_read_fails(r, 0, 8, "address zero");

    /* an empty read always succeeds, even where nothing is */
    assert_int_equal(reader_read(r, BASE + 64, out, 0, &err), 0);

    /* refused before the implementation: counted as no read */
    uint64_t reads = r->stats.reads;
    static uint8_t big[1];
    assert_int_equal(reader_read(r, BASE, big, (size_t)READER_MAX_READ + 1, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(r->stats.reads, reads);
    reader_close(r);
}

/* Address zero is refused even when the buffer pretends to live there. */
static void test_buffer_at_zero(void **state)
{
    (void)state;
    uint8_t buf[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct reader *r = reader_buffer_new(buf, sizeof buf, 0);
    assert_non_null(r);
    expect_read_fails(r, 0, 1, "address zero of a buffer at zero");
    uint8_t out[4];
    struct pm_error err = {0};
    assert_int_equal(reader_read(r, 1, out, 4, &err), 0);
    assert_memory_equal(out, buf + 1, 4);
    reader_close(r);
}

static void test_buffer_typed(void **state)
{
    (void)state;
    uint8_t buf[16] = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                       0xfe, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x80};
    struct reader *r = reader_buffer_new(buf, sizeof buf, BASE);
    struct pm_error err = {0};
    uint64_t u64;
    uint32_t u32;
    int32_t i32;
    assert_int_equal(reader_u64(r, BASE, &u64, &err), 0);
    assert_int_equal(u64, 0x1122334455667788ull);
    assert_int_equal(reader_u32(r, BASE + 12, &u32, &err), 0);
    assert_int_equal(u32, 0x80000001u);
    assert_int_equal(reader_i32(r, BASE + 8, &i32, &err), 0);
    assert_int_equal(i32, -2);
    /* unaligned */
    assert_int_equal(reader_u32(r, BASE + 1, &u32, &err), 0);
    assert_int_equal(u32, 0x44556677u);
    assert_int_equal(reader_u64(r, BASE + 9, &u64, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(reader_i32(r, BASE + 13, &i32, &err), -1);
    assert_int_equal(r->stats.reads, 6);
    reader_close(r);
}

/* The buffer is borrowed: a change shows at once, epochs or not. */
static void test_buffer_is_live(void **state)
{
    (void)state;
    uint64_t word = 1;
    struct reader *r = reader_buffer_new(&word, sizeof word, BASE);
    uint64_t got;
    assert_int_equal(reader_u64(r, BASE, &got, NULL), 0);
    assert_int_equal(got, 1);
    word = 2;
    assert_int_equal(reader_u64(r, BASE, &got, NULL), 0);
    assert_int_equal(got, 2);
    reader_new_epoch(r);
    word = 3;
    assert_int_equal(reader_u64(r, BASE, &got, NULL), 0);
    assert_int_equal(got, 3);
    /* a NULL error pointer is allowed on failure too */
    assert_int_equal(reader_u64(r, BASE + 8, &got, NULL), -1);
    reader_close(r);
}

static void test_cstr(void **state)
{
    (void)state;
    /* 64-byte aligned storage so chunk boundaries are where we think */
    static _Alignas(64) char buf[256];
    memset(buf, 'z', sizeof buf);
    strcpy(buf, "hello");
    strcpy(buf + 10, "a string that runs across a 64-byte boundary, and on, and on, and on to 87 chars in all");
    struct reader *r = reader_buffer_new(buf, sizeof buf, BASE);
    struct pm_error err = {0};
    char out[128];

    assert_int_equal(reader_cstr(r, BASE, out, sizeof out, &err), 0);
    assert_string_equal(out, "hello");
    assert_int_equal(reader_cstr(r, BASE + 10, out, sizeof out, &err), 0);
    assert_string_equal(out, buf + 10);
    assert_int_equal(strlen(out), 87);
    assert_int_equal(reader_cstr(r, BASE + 5, out, sizeof out, &err), 0);
    assert_string_equal(out, "");

    /* truncated to cap - 1, always terminated */
    memset(out, 'X', sizeof out);
    assert_int_equal(reader_cstr(r, BASE, out, 4, &err), 0);
    assert_string_equal(out, "hel");
    assert_int_equal(out[4], 'X');
    assert_int_equal(reader_cstr(r, BASE, out, 6, &err), 0);
    assert_string_equal(out, "hello");
    assert_int_equal(reader_cstr(r, BASE + 10, out, 70, &err), 0);
    assert_int_equal(strlen(out), 69);
    assert_memory_equal(out, buf + 10, 69);
    assert_int_equal(reader_cstr(r, BASE, out, 1, &err), 0);
    assert_string_equal(out, "");

    /* no NUL at all before the buffer ends: what was readable, terminated */
    memset(out, 'X', sizeof out);
    assert_int_equal(reader_cstr(r, BASE + 192, out, sizeof out, &err), 0);
    assert_int_equal(strlen(out), 64);
    assert_int_equal(out[63], 'z');

    /* the first byte unreadable: the only failure */
    assert_int_equal(reader_cstr(r, BASE + 256, out, sizeof out, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(reader_cstr(r, 0, out, sizeof out, &err), -1);
    assert_int_equal(reader_cstr(r, BASE, out, 0, &err), -1);
    reader_close(r);
}

/* A string that ends (NUL included) a few bytes before the end of readable
 * memory, where the end is not on a 64-byte boundary: its first byte is
 * readable, so it must be returned (the header promises failure only when
 * the first byte cannot be read). */
static void test_cstr_near_end_of_memory(void **state)
{
    (void)state;
    static _Alignas(64) char buf[100];
    memset(buf, 'q', sizeof buf);
    memcpy(buf + 90, "abc", 4);
    memcpy(buf + 95, "tail", 5);           /* NUL at the very last byte */
    struct reader *r = reader_buffer_new(buf, sizeof buf, BASE);
    struct pm_error err = {0};
    char out[64];
    assert_int_equal(reader_cstr(r, BASE + 90, out, sizeof out, &err), 0);
    assert_string_equal(out, "abc");
    assert_int_equal(reader_cstr(r, BASE + 95, out, sizeof out, &err), 0);
    assert_string_equal(out, "tail");
    /* unterminated up to the end: everything readable */
    buf[93] = 'q';
    buf[99] = 'q';
    assert_int_equal(reader_cstr(r, BASE + 80, out, sizeof out, &err), 0);
    assert_int_equal(strlen(out), 20);
    assert_memory_equal(out, buf + 80, 20);
    reader_close(r);
}

/* ---- remote reader on ourselves ----------------------------------------- */

static long page_size(void)
{
    return sysconf(_SC_PAGESIZE);
}

static void test_remote_self_across_pages(void **state)
{
    (void)state;
    size_t ps = (size_t)page_size();
    uint8_t *mem = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    for (size_t i = 0; i < 4 * ps; i++)
        mem[i] = (uint8_t)(i * 7 + i / 251);
    struct pm_error err = {0};
    struct reader *r = reader_remote_new(getpid(), &err);
    assert_non_null(r);
    uint64_t base = (uint64_t)(uintptr_t)mem;

    uint8_t out[64];
    /* 8 bytes straddling the first page boundary */
    assert_int_equal(reader_read(r, base + ps - 4, out, 8, &err), 0);
    assert_memory_equal(out, mem + ps - 4, 8);
    /* 64 bytes straddling the second */
    assert_int_equal(reader_read(r, base + 2 * ps - 31, out, 64, &err), 0);
    assert_memory_equal(out, mem + 2 * ps - 31, 64);

    /* larger than a page, and larger than two: straight through */
    uint8_t *big = malloc(4 * ps);
    assert_non_null(big);
    assert_int_equal(reader_read(r, base + 3, big, 3 * ps + 100, &err), 0);
    assert_memory_equal(big, mem + 3, 3 * ps + 100);
    assert_int_equal(reader_read(r, base, big, 4 * ps, &err), 0);
    assert_memory_equal(big, mem, 4 * ps);
    free(big);

    /* a local variable and a string literal */
    uint64_t local = 0x0123456789abcdefull, got;
    assert_int_equal(reader_u64(r, (uint64_t)(uintptr_t)&local, &got, &err), 0);
    assert_int_equal(got, 0x0123456789abcdefull);
    static const char literal[] = "pyrometer reads itself";
    char text[64];
    assert_int_equal(reader_cstr(r, (uint64_t)(uintptr_t)literal, text, sizeof text, &err), 0);
    assert_string_equal(text, literal);

    reader_close(r);
    munmap(mem, 4 * ps);
}

static void test_remote_page_cache_epochs(void **state)
{
    (void)state;
    size_t ps = (size_t)page_size();
    volatile uint64_t *mem = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true((void *)mem != MAP_FAILED);
    uint64_t a = (uint64_t)(uintptr_t)mem;
    uint64_t b = a + ps - 8;          /* same page, last word */
    mem[0] = 111;
    mem[ps / 8 - 1] = 222;

    struct pm_error err = {0};
    struct reader *r = reader_remote_new(getpid(), &err);
    assert_non_null(r);
    uint64_t got;
    assert_int_equal(reader_u64(r, a, &got, &err), 0);
    assert_int_equal(got, 111);
    assert_int_equal(r->stats.syscalls, 1);
    assert_int_equal(r->stats.cache_hits, 0);

    /* the memory changes; within the epoch the cached page is returned */
    mem[0] = 333;
    mem[ps / 8 - 1] = 444;
    assert_int_equal(reader_u64(r, a, &got, &err), 0);
    assert_int_equal(got, 111);
    assert_int_equal(reader_u64(r, b, &got, &err), 0);
    assert_int_equal(got, 222);
    assert_int_equal(r->stats.syscalls, 1);
    assert_int_equal(r->stats.cache_hits, 2);

    /* a new epoch sees the new values */
    reader_new_epoch(r);
    assert_int_equal(reader_u64(r, a, &got, &err), 0);
    assert_int_equal(got, 333);
    assert_int_equal(reader_u64(r, b, &got, &err), 0);
    assert_int_equal(got, 444);
    assert_int_equal(r->stats.syscalls, 2);
    assert_int_equal(r->stats.cache_hits, 3);
    assert_int_equal(r->stats.reads, 5);

    /* and keeps seeing them until the next one */
    mem[0] = 555;
    assert_int_equal(reader_u64(r, a, &got, &err), 0);
    assert_int_equal(got, 333);
    reader_new_epoch(r);
    assert_int_equal(reader_u64(r, a, &got, &err), 0);
    assert_int_equal(got, 555);

    reader_close(r);
    munmap((void *)mem, 2 * ps);
}

/* reader_read_fresh: never served from nor stored in the page cache. */
static void test_remote_read_fresh(void **state)
{
    (void)state;
    size_t ps = (size_t)page_size();
    volatile uint64_t *mem = mmap(NULL, ps, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true((void *)mem != MAP_FAILED);
    uint64_t a = (uint64_t)(uintptr_t)mem;
    mem[1] = 10;
    struct pm_error err = {0};
    struct reader *r = reader_remote_new(getpid(), &err);
    assert_non_null(r);
    uint64_t got;
    assert_int_equal(reader_u64(r, a + 8, &got, &err), 0);     /* caches the page */
    assert_int_equal(got, 10);
    mem[1] = 20;
    assert_int_equal(reader_read_fresh(r, a + 8, &got, 8, &err), 0);
    assert_int_equal(got, 20);
    /* the cached page is still the old one within this epoch */
    assert_int_equal(reader_u64(r, a + 8, &got, &err), 0);
    assert_int_equal(got, 10);
    assert_int_equal(r->stats.syscalls, 2);
    assert_int_equal(r->stats.cache_hits, 1);
    /* a fresh read of a page not cached does not cache it */
    reader_new_epoch(r);
    assert_int_equal(reader_read_fresh(r, a, &got, 8, &err), 0);
    assert_int_equal(r->stats.syscalls, 3);
    assert_int_equal(reader_u64(r, a, &got, &err), 0);
    assert_int_equal(r->stats.syscalls, 4);
    assert_int_equal(r->stats.cache_hits, 1);
    /* the same bounds as reader_read */
    assert_int_equal(reader_read_fresh(r, 0, &got, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(reader_read_fresh(r, UINT64_MAX - 3, &got, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(r->stats.syscalls, 4);
    reader_close(r);

    /* the buffer reader has no cache: the same as reader_read, same bounds */
    uint8_t buf[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct reader *b = reader_buffer_new(buf, sizeof buf, BASE);
    uint8_t out[8];
    assert_int_equal(reader_read_fresh(b, BASE + 8, out, 8, &err), 0);
    assert_memory_equal(out, buf + 8, 8);
    assert_int_equal(reader_read_fresh(b, BASE + 9, out, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    reader_close(b);
    munmap((void *)mem, ps);
}

static void test_remote_unmapped(void **state)
{
    (void)state;
    size_t ps = (size_t)page_size();
    uint8_t *mem = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    memset(mem, 0x42, 2 * ps);
    assert_int_equal(munmap(mem + ps, ps), 0);   /* keep the first page only */
    uint64_t base = (uint64_t)(uintptr_t)mem;

    struct pm_error err = {0};
    struct reader *r = reader_remote_new(getpid(), &err);
    assert_non_null(r);
    uint8_t out[16];

    /* the hole */
    assert_int_equal(reader_read(r, base + ps, out, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(reader_read(r, base + 2 * ps - 8, out, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    /* straddling from the mapped page into the hole */
    assert_int_equal(reader_read(r, base + ps - 8, out, 16, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    /* the mapped page's last bytes still read fine */
    assert_int_equal(reader_read(r, base + ps - 8, out, 8, &err), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(out[i], 0x42);
    /* address zero never reaches the kernel */
    uint64_t syscalls = r->stats.syscalls;
    assert_int_equal(reader_read(r, 0, out, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_int_equal(r->stats.syscalls, syscalls);

    /* a page unmapped after it was cached: a new epoch notices */
    assert_int_equal(munmap(mem, ps), 0);
    reader_new_epoch(r);
    assert_int_equal(reader_read(r, base + 8, out, 8, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    reader_close(r);
}

/* reader_readv: one syscall for many items, all fresh, all or nothing; the
 * buffer reader does it item by item with the same answers. */
static void test_readv(void **state)
{
    (void)state;
    size_t ps = (size_t)page_size();
    uint8_t *mem = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    for (size_t i = 0; i < 2 * ps; i++)
        mem[i] = (uint8_t)(i * 7);
    assert_int_equal(munmap(mem + ps, ps), 0);   /* a hole after the first page */
    uint64_t base = (uint64_t)(uintptr_t)mem;
    struct pm_error err = {0};
    struct reader *r = reader_remote_new(getpid(), &err);
    assert_non_null(r);
    uint8_t a[8], b[100], c[1];
    struct reader_iov iov[3] = {{base + 8, a, sizeof a}, {base + 200, b, sizeof b},
                                {base + ps - 1, c, 1}};
    assert_int_equal(reader_u64(r, base + 8, (uint64_t *)a, &err), 0);   /* caches the page */
    mem[8] = 0xAB;
    uint64_t before = r->stats.syscalls;
    assert_int_equal(reader_readv(r, iov, 3, &err), 0);
    assert_int_equal(r->stats.syscalls, before + 1);
    assert_int_equal(a[0], 0xAB);                     /* fresh, not the cached page */
    assert_memory_equal(a + 1, mem + 9, 7);
    assert_memory_equal(b, mem + 200, sizeof b);
    assert_int_equal(c[0], mem[ps - 1]);
    /* an item in the hole (or straddling into it) fails the whole read */
    struct reader_iov bad[3] = {{base, a, 8}, {base + ps - 4, b, 8}, {base + 16, c, 1}};
    assert_int_equal(reader_readv(r, bad, 3, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    assert_non_null(strstr(err.msg, "8 bytes"));
    struct reader_iov hole[2] = {{base, a, 8}, {base + ps, b, 8}};
    assert_int_equal(reader_readv(r, hole, 2, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    /* bad items never reach the kernel */
    before = r->stats.syscalls;
    struct reader_iov zero[2] = {{base, a, 8}, {0, b, 8}};
    assert_int_equal(reader_readv(r, zero, 2, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    struct reader_iov wrap = {UINT64_MAX - 3, a, 8};
    assert_int_equal(reader_readv(r, &wrap, 1, &err), -1);
    struct reader_iov empty = {base, a, 0};
    assert_int_equal(reader_readv(r, &empty, 1, &err), -1);
    struct reader_iov many[READER_MAX_IOV + 1];
    for (size_t i = 0; i < READER_MAX_IOV + 1; i++)
        many[i] = (struct reader_iov){base, a, 1};
    assert_int_equal(reader_readv(r, many, READER_MAX_IOV + 1, &err), -1);
    assert_int_equal(r->stats.syscalls, before);
    assert_int_equal(reader_readv(r, many, READER_MAX_IOV, &err), 0);
    assert_int_equal(reader_readv(r, many, 0, &err), 0);
    reader_close(r);

    /* the buffer reader: item by item, the same bounds */
    uint8_t buf[32];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)i;
    struct reader *br = reader_buffer_new(buf, sizeof buf, BASE);
    struct reader_iov in[2] = {{BASE + 24, a, 8}, {BASE, b, 4}};
    assert_int_equal(reader_readv(br, in, 2, &err), 0);
    assert_memory_equal(a, buf + 24, 8);
    assert_memory_equal(b, buf, 4);
    struct reader_iov out[2] = {{BASE, a, 8}, {BASE + 25, b, 8}};
    assert_int_equal(reader_readv(br, out, 2, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    reader_close(br);
    munmap(mem, ps);
}

/* Batched items close together become one remote range (the kernel's cost
 * is per range), copied out exactly; items out of order, far apart or
 * across a hole stay separate, and a hole still fails the read. */
static void test_readv_merges(void **state)
{
    (void)state;
    size_t ps = (size_t)page_size();
    uint8_t *mem = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    for (size_t i = 0; i < 4 * ps; i++)
        mem[i] = (uint8_t)(i * 13 + 5);
    assert_int_equal(munmap(mem + 2 * ps, ps), 0);   /* a hole: the third page */
    uint64_t base = (uint64_t)(uintptr_t)mem;
    struct pm_error err = {0};
    struct reader *r = reader_remote_new(getpid(), &err);
    assert_non_null(r);
    uint8_t a[16], b[40], c[8], d[300], e[8];
    /* a, b (overlapping a), c (a small gap), d (crossing into page 2):
     * one range; e backwards: a second */
    struct reader_iov iov[5] = {{base + 100, a, sizeof a}, {base + 108, b, sizeof b},
                                {base + 2000, c, sizeof c}, {base + ps - 100, d, sizeof d},
                                {base + 10, e, sizeof e}};
    uint64_t ranges = r->stats.ranges, calls = r->stats.syscalls;
    assert_int_equal(reader_readv(r, iov, 5, &err), 0);
    assert_int_equal(r->stats.syscalls, calls + 1);
    assert_int_equal(r->stats.ranges, ranges + 2);
    assert_memory_equal(a, mem + 100, sizeof a);
    assert_memory_equal(b, mem + 108, sizeof b);
    assert_memory_equal(c, mem + 2000, sizeof c);
    assert_memory_equal(d, mem + ps - 100, sizeof d);
    assert_memory_equal(e, mem + 10, sizeof e);
    /* far apart: not merged */
    struct reader_iov far[2] = {{base, a, 8}, {base + ps + 3000, c, 8}};
    ranges = r->stats.ranges;
    assert_int_equal(reader_readv(r, far, 2, &err), 0);
    assert_int_equal(r->stats.ranges, ranges + 2);
    assert_memory_equal(c, mem + ps + 3000, 8);
    /* the end of page 2 and the start of page 4 are near, but the hole
     * between them is a whole page: never one range, and each readable */
    struct reader_iov across[2] = {{base + 2 * ps - 8, a, 8}, {base + 3 * ps, c, 8}};
    assert_int_equal(reader_readv(r, across, 2, &err), 0);
    assert_memory_equal(a, mem + 2 * ps - 8, 8);
    assert_memory_equal(c, mem + 3 * ps, 8);
    /* an item in the hole fails the batch, and names the item */
    struct reader_iov holed[3] = {{base + 8, a, 8}, {base + 2 * ps + 16, c, 8}, {base, e, 8}};
    assert_int_equal(reader_readv(r, holed, 3, &err), -1);
    assert_int_equal(err.code, PM_EREAD);
    char want[64];
    snprintf(want, sizeof want, "0x%llx", (unsigned long long)(base + 2 * ps + 16));
    assert_non_null(strstr(err.msg, want));
    reader_close(r);
    munmap(mem, 2 * ps);
    munmap(mem + 3 * ps, ps);
}

/* ---- a child ------------------------------------------------------------ */

static volatile uint64_t shared_word = 0x1122334455667788ull;

static void test_remote_child_then_dead(void **state)
{
    (void)state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    shared_word = 0xfeedfacecafebeefull;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(ready[0]);
        (void)!write(ready[1], "x", 1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    shared_word = 7;   /* ours changes, the child's copy does not */

    struct pm_error err = {0};
    struct reader *r = reader_remote_new(child, &err);
    assert_non_null(r);
    uint64_t got = 0;
    int rc = reader_u64(r, (uint64_t)(uintptr_t)&shared_word, &got, &err);
    uint64_t in_child = got;

    /* killed, still a zombie */
    kill(child, SIGKILL);
    int zombie = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)child);
    for (int tries = 0; tries < 2000 && !zombie; tries++) {
        char stat[256] = "";
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(stat, 1, sizeof stat - 1, f);
            stat[n] = '\0';
            fclose(f);
        }
        const char *paren = strrchr(stat, ')');
        zombie = paren && paren[1] == ' ' && paren[2] == 'Z';
        if (!zombie)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    reader_new_epoch(r);
    struct pm_error zombie_err = {0};
    int zombie_rc = reader_u64(r, (uint64_t)(uintptr_t)&shared_word, &got, &zombie_err);

    /* reaped */
    waitpid(child, NULL, 0);
    reader_new_epoch(r);
    struct pm_error dead_err = {0};
    int dead_rc = reader_u64(r, (uint64_t)(uintptr_t)&shared_word, &got, &dead_err);
    reader_close(r);

    assert_int_equal(rc, 0);
    assert_int_equal(in_child, 0xfeedfacecafebeefull);
    assert_true(zombie);
    assert_int_equal(zombie_rc, -1);
    assert_int_equal(zombie_err.code, PM_EGONE);
    assert_int_equal(dead_rc, -1);
    assert_int_equal(dead_err.code, PM_EGONE);
    assert_non_null(strstr(dead_err.msg, "exited"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffer_edges),
        cmocka_unit_test(test_buffer_at_zero),
        cmocka_unit_test(test_buffer_typed),
        cmocka_unit_test(test_buffer_is_live),
        cmocka_unit_test(test_cstr),
        cmocka_unit_test(test_cstr_near_end_of_memory),
        cmocka_unit_test(test_remote_self_across_pages),
        cmocka_unit_test(test_remote_page_cache_epochs),
        cmocka_unit_test(test_remote_read_fresh),
        cmocka_unit_test(test_remote_unmapped),
        cmocka_unit_test(test_readv),
        cmocka_unit_test(test_readv_merges),
        cmocka_unit_test(test_remote_child_then_dead),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
