/*
 * capture_write.c — the capture writer (format: capture.h).
 *
 * Runs inside the tracked program, inside malloc: it never calls malloc,
 * stdio or anything that might; mappings are made with raw system calls so
 * they do not reach the tracker's own mmap hook.  Each block of the file is
 * reserved with fallocate before it is mapped, so a full disk is an error
 * here (the writer stops, keeping what is written) and never a SIGBUS later.
 * Appending to a stream's current block is the caller's lock-free fast path
 * (capture.h); starting a block is serialised by the caller.  Must never
 * print.
 */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Two lanes of 64-bit words in each of two vector registers, each lane a
 * Fletcher pair (a += word, b += a: a word changed, dropped or moved
 * changes the sums), 32 bytes a step in SSE2 adds; the tail is zero-padded
 * and the length mixed in. */
typedef uint64_t capture_v2 __attribute__((vector_size(16)));

uint32_t capture_checksum(const uint8_t *p, size_t n)
{
    capture_v2 a0 = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL}, b0 = {0, 0};
    capture_v2 a1 = {0xa4093822299f31d0ULL, 0x082efa98ec4e6c89ULL}, b1 = {0, 0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        capture_v2 x, y;
        memcpy(&x, p + i, 16);
        memcpy(&y, p + i + 16, 16);
        a0 += x;
        b0 += a0;
        a1 += y;
        b1 += a1;
    }
    if (i < n) {
        uint8_t tail[32] = {0};
        memcpy(tail, p + i, n - i);
        capture_v2 x, y;
        memcpy(&x, tail, 16);
        memcpy(&y, tail + 16, 16);
        a0 += x;
        b0 += a0;
        a1 += y;
        b1 += a1;
    }
    uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15ULL;
    const uint64_t lanes[8] = {a0[0], a0[1], a1[0], a1[1], b0[0], b0[1], b1[0], b1[1]};
    for (int k = 0; k < 8; k++) {
        h = (h ^ lanes[k]) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static void *raw_mmap(size_t len, int fd, off_t off)
{
    long r = syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
    if (r < 0 && r > -4096)
        return NULL;
    /* populated writable at once: one system call instead of a write
     * fault per page (MAP_POPULATE maps a shared file's pages read-only,
     * so each first write would still fault); older kernels get
     * MAP_POPULATE's read-only half */
    if (syscall(SYS_madvise, (void *)r, len, MADV_POPULATE_WRITE) != 0)
        syscall(SYS_madvise, (void *)r, len, MADV_WILLNEED);
    return (void *)r;
}

static void raw_munmap(void *p, size_t len)
{
    syscall(SYS_munmap, p, len);
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static int writer_fail(struct capture_writer *w, int e)
{
    w->failed = 1;
    w->fail_errno = e;
    return -1;
}

void capture_stream_seal(struct capture_writer *w, struct capture_stream *s)
{
    if (s->block == NULL)
        return;
    uint8_t *b = s->block;
    put32(b + 16, capture_checksum(b + CAPTURE_BLOCK_HEADER, s->used));
    __atomic_store_n((uint32_t *)(void *)(b + 20), 1u, __ATOMIC_RELEASE);
    w->bytes += s->used;
    raw_munmap(b, s->size);
    s->block = NULL;
    s->used = 0;
}

void capture_stream_abandon(struct capture_stream *s)
{
    if (s->block)
        raw_munmap(s->block, s->size);
    s->block = NULL;
    s->used = 0;
}

int capture_stream_next(struct capture_writer *w, struct capture_stream *s, size_t len)
{
    if (w->failed || w->fd < 0)
        return -1;
    if (len > CAPTURE_RECORD_MAX)
        return -1;
    capture_stream_seal(w, s);
    uint32_t size = s->next_size ? s->next_size : CAPTURE_BLOCK_MIN;
    size_t need = (len + CAPTURE_BLOCK_HEADER + CAPTURE_ALIGN - 1) & ~(size_t)(CAPTURE_ALIGN - 1);
    if (need > size)
        size = (uint32_t)need;
    off_t off = (off_t)w->end;
    /* fallocate reserves the blocks (ENOSPC now, not SIGBUS later); a file
     * system without it gets the file extended instead */
    if (fallocate(w->fd, 0, off, size) != 0) {
        if (errno != EOPNOTSUPP && errno != ENOSYS)
            return writer_fail(w, errno);
        if (ftruncate(w->fd, off + (off_t)size) != 0)
            return writer_fail(w, errno);
    }
    uint8_t *m = raw_mmap(size, w->fd, off);
    if (m == NULL)
        return writer_fail(w, ENOMEM);
    w->end += size;
    put32(m + 4, 0);
    put32(m + 8, size);
    put32(m + 12, s->id);
    put32(m + 16, 0);
    put32(m + 20, 0);
    memset(m + 24, 0, 8);
    __atomic_store_n((uint32_t *)(void *)m, CAPTURE_BLOCK_MAGIC, __ATOMIC_RELEASE);
    s->block = m;
    s->size = size;
    s->used = 0;
    if (s->next_size < CAPTURE_BLOCK_GROW)
        s->next_size = s->next_size ? s->next_size * 2 : CAPTURE_BLOCK_MIN * 2;
    return 0;
}

int capture_writer_open(struct capture_writer *w, const char *path, uint32_t flags)
{
    memset(w, 0, sizeof *w);
    w->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0)
        return -1;
    uint8_t h[CAPTURE_HEADER_SIZE] = {0};
    memcpy(h, CAPTURE_MAGIC, 8);
    put32(h + 8, CAPTURE_VERSION);
    put32(h + 12, CAPTURE_ALIGN);
    put32(h + 16, CAPTURE_HEADER_SIZE);
    put32(h + 20, flags);
    if (pwrite(w->fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
        ftruncate(w->fd, CAPTURE_ALIGN) != 0) {
        int e = errno;
        close(w->fd);
        w->fd = -1;
        errno = e;
        return -1;
    }
    w->end = CAPTURE_ALIGN;
    return 0;
}

int capture_stream_add(struct capture_writer *w, struct capture_stream *s, const uint8_t *rec,
                       size_t len)
{
    if (w->failed)
        return -1;
    if (len > CAPTURE_RECORD_MAX)
        return 0;   /* never written: the reader would not accept it */
    uint8_t *dst = capture_stream_room(s, len);
    if (dst == NULL) {
        if (capture_stream_next(w, s, len) != 0)
            return -1;
        dst = capture_stream_room(s, len);
    }
    memcpy(dst, rec, len);
    capture_stream_commit(s, len);
    return 0;
}

int capture_writer_add(struct capture_writer *w, const uint8_t *rec, size_t len)
{
    return capture_stream_add(w, &w->main, rec, len);
}

void capture_writer_close(struct capture_writer *w, struct capture_stream *s)
{
    if (w->fd < 0)
        return;
    capture_stream_seal(w, &w->main);
    if (s)
        capture_stream_seal(w, s);
    close(w->fd);
    w->fd = -1;
}

void capture_writer_abandon(struct capture_writer *w)
{
    capture_stream_abandon(&w->main);
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}
