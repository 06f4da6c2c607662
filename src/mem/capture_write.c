/*
 * capture_write.c — the capture writer (format: capture.h).
 *
 * Runs inside the tracked program, inside malloc: it never calls malloc,
 * stdio or anything that might; mappings are made with raw system calls so
 * they do not reach the tracker's own mmap hook.  Every block and window of
 * the file is reserved with fallocate before it is used, so a full disk is
 * an error here (the writer stops, keeping what is written) and never a
 * SIGBUS later.  Appending to a stream's window is the caller's lock-free
 * fast path (capture.h); copying a window out and starting a block are
 * serialised by the caller.  Must never print.
 *
 * Why windows: a block written through its own fresh mapping costs the
 * kernel a page fault (page cache page, zeroing, dirty accounting) per 4
 * KiB, and an unmap; copying a reused, cached window with pwrite costs a
 * quarter of that (82 MB: 0.094 s against 0.025 s of system time here).
 * Why chunks (capture.h): a pwrite of a whole, aligned 64 KiB can be one
 * large page-cache folio where an unaligned one is 17 pages, a third less
 * system time for the same bytes here.
 */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The checksum: two lanes of 64-bit words in each of two vector
 * registers, each lane a Fletcher pair (a += word, b += a: a word changed,
 * dropped or moved changes the sums), 32 bytes a step in SSE2 adds; the
 * tail is zero-padded and the length mixed in.  `steps` steps from p, the
 * sums in registers (in *c they would be stored back at every step: p's
 * bytes might be them, as far as the compiler knows).  About 9
 * instructions a step. */
static void sum_steps_sse2(struct capture_sum *c, const uint8_t *p, size_t steps)
{
    capture_v2 a0 = c->a0, b0 = c->b0, a1 = c->a1, b1 = c->b1;
    for (; steps > 0; steps--, p += 32) {
        capture_v2 x, y;
        memcpy(&x, p, 16);
        memcpy(&y, p + 16, 16);
        a0 += x;
        b0 += a0;
        a1 += y;
        b1 += a1;
    }
    c->a0 = a0;
    c->b0 = b0;
    c->a1 = a1;
    c->b1 = b1;
}

#if defined(__x86_64__)
/* The same sums with AVX2 (four lanes: a0's two and a1's two in one
 * register, b0's and b1's in another), where the CPU has it: the same
 * result, two steps in about 7 instructions. */
typedef uint64_t capture_v4 __attribute__((vector_size(32)));

__attribute__((target("avx2"))) static void sum_steps_avx2(struct capture_sum *c,
                                                           const uint8_t *p, size_t steps)
{
    capture_v4 a = {c->a0[0], c->a0[1], c->a1[0], c->a1[1]};
    capture_v4 b = {c->b0[0], c->b0[1], c->b1[0], c->b1[1]};
    for (; steps >= 2; steps -= 2, p += 64) {
        capture_v4 x, y;
        memcpy(&x, p, 32);
        memcpy(&y, p + 32, 32);
        a += x;
        b += a;
        a += y;
        b += a;
    }
    if (steps) {
        capture_v4 x;
        memcpy(&x, p, 32);
        a += x;
        b += a;
    }
    c->a0 = (capture_v2){a[0], a[1]};
    c->a1 = (capture_v2){a[2], a[3]};
    c->b0 = (capture_v2){b[0], b[1]};
    c->b1 = (capture_v2){b[2], b[3]};
}

#endif

static int sum_avx2 = -1;   /* -1: not decided yet */

void capture_sum_select(int avx2)
{
#if defined(__x86_64__)
    if (avx2 < 0) {
        __builtin_cpu_init();
        avx2 = __builtin_cpu_supports("avx2") != 0;
    }
#else
    avx2 = 0;
#endif
    __atomic_store_n(&sum_avx2, avx2, __ATOMIC_RELAXED);
}

static void sum_steps(struct capture_sum *c, const uint8_t *p, size_t steps)
{
    int avx2 = __atomic_load_n(&sum_avx2, __ATOMIC_RELAXED);
    if (__builtin_expect(avx2 < 0, 0)) {
        capture_sum_select(-1);
        avx2 = __atomic_load_n(&sum_avx2, __ATOMIC_RELAXED);
    }
#if defined(__x86_64__)
    if (avx2) {
        sum_steps_avx2(c, p, steps);
        return;
    }
#endif
    sum_steps_sse2(c, p, steps);
}

void capture_sum_init(struct capture_sum *c)
{
    memset(c, 0, sizeof *c);
    c->a0 = (capture_v2){0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL};
    c->a1 = (capture_v2){0xa4093822299f31d0ULL, 0x082efa98ec4e6c89ULL};
}

void capture_sum_add(struct capture_sum *c, const uint8_t *p, size_t n)
{
    c->n += n;
    if (c->ncarry) {
        size_t k = 32 - c->ncarry < n ? 32 - c->ncarry : n;
        memcpy(c->carry + c->ncarry, p, k);
        c->ncarry += (uint32_t)k;
        p += k;
        n -= k;
        if (c->ncarry < 32)
            return;
        sum_steps(c, c->carry, 1);
        c->ncarry = 0;
    }
    if (n >= 32) {
        sum_steps(c, p, n / 32);
        p += n & ~(size_t)31;
        n &= 31;
    }
    memcpy(c->carry, p, n);
    c->ncarry = (uint32_t)n;
}

uint32_t capture_sum_final(const struct capture_sum *c)
{
    struct capture_sum t = *c;
    if (t.ncarry) {
        memset(t.carry + t.ncarry, 0, 32 - t.ncarry);
        sum_steps(&t, t.carry, 1);
    }
    uint64_t h = t.n * 0x9e3779b97f4a7c15ULL;
    const uint64_t lanes[8] = {t.a0[0], t.a0[1], t.a1[0], t.a1[1],
                               t.b0[0], t.b0[1], t.b1[0], t.b1[1]};
    for (int k = 0; k < 8; k++) {
        h = (h ^ lanes[k]) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

uint32_t capture_checksum(const uint8_t *p, size_t n)
{
    struct capture_sum c;
    capture_sum_init(&c);
    capture_sum_add(&c, p, n);
    return capture_sum_final(&c);
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
    if (!w->failed && e != 0 && w->fd >= 0) {
        /* the header's `stopped`, so the report can say why the capture
         * ends here; overwriting the header page needs no new space */
        uint32_t v = (uint32_t)e;
        ssize_t k = pwrite(w->fd, &v, 4, 24);
        (void)k;   /* if that fails too, the capture still reads (no END) */
    }
    w->failed = 1;
    w->fail_errno = e;
    return -1;
}

/* All of buf at off, or -1. */
static int put_at(struct capture_writer *w, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t k = pwrite(w->fd, p, len, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return writer_fail(w, k < 0 ? errno : EIO);
        p += k;
        len -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

static int put32_at(struct capture_writer *w, uint32_t v, uint64_t off)
{
    return put_at(w, &v, 4, off);
}

/* Reserve size bytes at the end of the file: 0 and *off, or -1. */
static int reserve(struct capture_writer *w, uint32_t size, uint64_t *off)
{
    /* fallocate reserves the space (ENOSPC now, not SIGBUS later); a file
     * system without it gets the file extended instead */
    if (fallocate(w->fd, 0, (off_t)w->end, size) != 0) {
        if (errno != EOPNOTSUPP && errno != ENOSYS)
            return writer_fail(w, errno);
        if (ftruncate(w->fd, (off_t)(w->end + size)) != 0)
            return writer_fail(w, errno);
    }
    *off = w->end;
    w->end += size;
    return 0;
}

/* Point s's window at its current block's chunk that payload position
 * `copied` is in, from there on.  The window's data is that chunk, the
 * bytes of the file from a multiple of CAPTURE_CHUNK after the block's
 * start (the block's first holds its header too) to the next, or to the
 * block's end. */
static void window_restart(struct capture_stream *s)
{
    uint8_t *h = s->win;
    uint64_t at = CAPTURE_BLOCK_HEADER + (uint64_t)s->copied;   /* from the block's start */
    uint64_t chunk = at - at % CAPTURE_CHUNK, end = chunk + CAPTURE_CHUNK;
    if (end > s->size)
        end = s->size;
    uint32_t data = CAPTURE_WINDOW_HEAD + (uint32_t)(at - chunk);
    /* upto first: for a moment the window holds nothing, never stale bytes */
    __atomic_store_n((uint32_t *)(void *)(h + 4), s->copied, __ATOMIC_RELEASE);
    put32(h + 12, s->id);
    put32(h + 16, (uint32_t)(s->block_off / CAPTURE_ALIGN));
    put32(h + 24, data);
    __atomic_store_n((uint32_t *)(void *)(h + 20), s->copied, __ATOMIC_RELEASE);
    s->base = (uint8_t *)((uintptr_t)(h + data) - s->copied);
    s->wend = (uint32_t)(end - CAPTURE_BLOCK_HEADER);
}

/* Write n bytes into the block after what it holds (head of them the
 * block's header, when they start at its first byte): the data, then the
 * block's used; then the window starts again from there. */
static int block_put(struct capture_writer *w, struct capture_stream *s, const uint8_t *data,
                     uint32_t n, uint32_t head)
{
    uint32_t used = s->copied + n - head;
    uint64_t off = s->block_off + CAPTURE_BLOCK_HEADER + s->copied - head;
    if (put_at(w, data, n, off) != 0 || put32_at(w, used, s->block_off + 4) != 0)
        return -1;
    w->copies++;
    w->chunk_copies += off % CAPTURE_CHUNK == 0 && n == CAPTURE_CHUNK;
    capture_sum_add(&s->sum, data + head, n - head);
    s->used = s->copied = used;
    window_restart(s);
    return 0;
}

/* Copy what the window holds into the block: from the block's header,
 * which the window's first chunk keeps a copy of, when nothing is in the
 * block yet, so that the copy is the whole chunk. */
static int window_copy(struct capture_writer *w, struct capture_stream *s)
{
    if (s->win == NULL || s->block_off == 0 || s->used == s->copied)
        return 0;
    uint32_t head = s->copied == 0 ? CAPTURE_BLOCK_HEADER : 0;
    return block_put(w, s, s->base + s->copied - head, s->used - s->copied + head, head);
}

/* Copy the window out and seal the block (its checksum, then sealed). */
static int block_seal(struct capture_writer *w, struct capture_stream *s)
{
    if (s->block_off == 0)
        return 0;
    int rc = window_copy(w, s);
    if (rc == 0) {
        uint32_t tail[2] = {capture_sum_final(&s->sum), 1u};
        rc = put_at(w, tail, sizeof tail, s->block_off + 16);
        w->bytes += s->used;
    }
    s->block_off = 0;
    s->size = 0;   /* no room until the next block: the fast path stays out */
    s->used = s->copied = s->wend = 0;
    return rc;
}

static void window_release(struct capture_writer *w, struct capture_stream *s)
{
    if (s->win == NULL)
        return;
    /* nothing in it, and naming no block: a reader passes it by */
    __atomic_store_n((uint32_t *)(void *)(s->win + 4), 0u, __ATOMIC_RELEASE);
    put32(s->win + 16, 0);
    put32(s->win + 20, 0);
    s->wend = 0;
    if (w->nfree_windows < CAPTURE_WINDOWS_FREE)
        w->free_windows[w->nfree_windows++] = s->win;
    else
        raw_munmap(s->win, CAPTURE_WINDOW_SIZE);
    s->win = s->base = NULL;
}

void capture_stream_abandon(struct capture_stream *s)
{
    if (s->win)
        raw_munmap(s->win, CAPTURE_WINDOW_SIZE);
    s->win = s->base = NULL;
    s->block_off = 0;
    s->used = s->copied = s->wend = 0;
}

void capture_stream_seal(struct capture_writer *w, struct capture_stream *s)
{
    /* a window that could not be copied out keeps its records for the reader */
    if (w->fd < 0 || w->failed || block_seal(w, s) != 0)
        capture_stream_abandon(s);
    else
        window_release(w, s);
}

/* A window for s: one given back by a stream that ended, or a new one. */
static int window_get(struct capture_writer *w, struct capture_stream *s)
{
    if (w->nfree_windows) {
        s->win = w->free_windows[--w->nfree_windows];
        return 0;
    }
    uint64_t off;
    if (reserve(w, CAPTURE_WINDOW_SIZE, &off) != 0)
        return -1;
    uint8_t *m = raw_mmap(CAPTURE_WINDOW_SIZE, w->fd, (off_t)off);
    if (m == NULL)
        return writer_fail(w, ENOMEM);
    memset(m + 4, 0, CAPTURE_BLOCK_HEADER - 4);
    put32(m + 8, CAPTURE_WINDOW_SIZE);
    put32(m + 24, CAPTURE_WINDOW_HEAD);
    __atomic_store_n((uint32_t *)(void *)m, CAPTURE_WINDOW_MAGIC, __ATOMIC_RELEASE);
    s->win = m;
    return 0;
}

/* Before a block of a chunk or more, the file's end moves to a multiple
 * of CAPTURE_CHUNK: the space up to it is an empty window (naming no
 * block, which readers pass by). */
static int align_end(struct capture_writer *w)
{
    uint32_t gap = (uint32_t)((CAPTURE_CHUNK - w->end % CAPTURE_CHUNK) % CAPTURE_CHUNK);
    uint64_t off;
    if (gap == 0)
        return 0;
    if (reserve(w, gap, &off) != 0)
        return -1;
    uint32_t h[8] = {CAPTURE_WINDOW_MAGIC, 0, gap, 0, 0, 0, 0, 0};
    return put_at(w, h, sizeof h, off);
}

/* Seal s's block and start a new one with room for len bytes. */
static int block_next(struct capture_writer *w, struct capture_stream *s, size_t len)
{
    if (block_seal(w, s) != 0)
        return -1;
    uint32_t size = s->next_size ? s->next_size : CAPTURE_BLOCK_MIN;
    size_t need = (len + CAPTURE_BLOCK_HEADER + CAPTURE_ALIGN - 1) & ~(size_t)(CAPTURE_ALIGN - 1);
    if (need > size)
        size = (uint32_t)need;
    if (size >= CAPTURE_CHUNK)
        size = (size + CAPTURE_CHUNK - 1) & ~(CAPTURE_CHUNK - 1);
    if (s->win == NULL && window_get(w, s) != 0)
        return -1;
    uint64_t off;
    if ((size >= CAPTURE_CHUNK && align_end(w) != 0) || reserve(w, size, &off) != 0)
        return -1;
    uint32_t h[8] = {CAPTURE_BLOCK_MAGIC, 0, size, s->id, 0, 0, 0, 0};
    if (put_at(w, h, sizeof h, off) != 0)
        return -1;
    memcpy(s->win + CAPTURE_WINDOW_HEAD, h, sizeof h);   /* the first chunk's copy */
    s->block_off = off;
    s->size = size;
    s->used = s->copied = 0;
    capture_sum_init(&s->sum);
    window_restart(s);
    if (s->next_size < CAPTURE_BLOCK_GROW)
        s->next_size = s->next_size ? s->next_size * 2 : CAPTURE_BLOCK_MIN * 2;
    return 0;
}

int capture_stream_next(struct capture_writer *w, struct capture_stream *s, size_t len)
{
    if (w->failed || w->fd < 0)
        return -1;
    if (len > CAPTURE_WINDOW_DATA)
        return -1;
    if (s->block_off != 0 && len <= (size_t)(s->size - CAPTURE_BLOCK_HEADER - s->wend)) {
        /* the block has room after this chunk: pad it out and copy it */
        memset(s->base + s->used, 0, s->wend - s->used);
        s->used = s->wend;
        return window_copy(w, s);
    }
    return block_next(w, s, len);
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
    if (dst == NULL && len <= CAPTURE_WINDOW_DATA) {
        if (capture_stream_next(w, s, len) != 0)
            return -1;
        dst = capture_stream_room(s, len);
    }
    if (dst != NULL) {
        memcpy(dst, rec, len);
        capture_stream_commit(s, len);
        return 0;
    }
    /* larger than a window (a long line table): straight into the block */
    if (w->fd < 0 || window_copy(w, s) != 0)
        return -1;
    if ((s->block_off == 0 || len > (size_t)(s->size - CAPTURE_BLOCK_HEADER - s->used)) &&
        block_next(w, s, len) != 0)
        return -1;
    return block_put(w, s, rec, (uint32_t)len, 0);
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
    for (uint32_t i = 0; i < w->nfree_windows; i++)
        raw_munmap(w->free_windows[i], CAPTURE_WINDOW_SIZE);
    w->nfree_windows = 0;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}
