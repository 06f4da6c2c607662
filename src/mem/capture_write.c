/*
 * capture_write.c — the capture writer (format: capture.h).
 *
 * Runs inside the tracked program, inside malloc: it never calls malloc,
 * stdio or anything that might; mappings are made with raw system calls so
 * they do not reach the tracker's own mmap hook.  Each window of the file is
 * reserved with fallocate before it is mapped, so a full disk is an error
 * here (the writer stops, keeping what is written) and never a SIGBUS later.
 * Must never print.
 */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

uint32_t capture_fnv1a(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static void *raw_mmap(size_t len, int fd, off_t off)
{
    /* populated at once: one system call instead of a fault per page */
    long r = syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, off);
    if (r < 0 && r > -4096)
        return NULL;
    if (r == -1)
        return NULL;
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
    if (w->map) {
        raw_munmap(w->map, w->window);
        w->map = NULL;
    }
    return -1;
}

/* Reserve, map and start window w->index. */
static int map_window(struct capture_writer *w)
{
    off_t off = (off_t)(w->index * w->window);
    /* fallocate reserves the blocks (ENOSPC now, not SIGBUS later); a file
     * system without it gets the file extended instead */
    if (fallocate(w->fd, 0, off, w->window) != 0) {
        if (errno != EOPNOTSUPP && errno != ENOSYS)
            return writer_fail(w, errno);
        if (ftruncate(w->fd, off + (off_t)w->window) != 0)
            return writer_fail(w, errno);
    }
    uint8_t *m = raw_mmap(w->window, w->fd, off);
    if (m == NULL)
        return writer_fail(w, ENOMEM);
    w->map = m;
    uint32_t start = w->index == 0 ? CAPTURE_HEADER_SIZE : 0;
    w->chunk = m + start;
    w->room = w->window - start - CAPTURE_CHUNK_HEADER;
    w->used = 0;
    w->sum = CAPTURE_FNV_INIT;
    put32(w->chunk + 4, 0);
    put32(w->chunk + 8, w->sum);
    put32(w->chunk + 12, (uint32_t)w->index);
    __atomic_store_n((uint32_t *)(void *)w->chunk, CAPTURE_CHUNK_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

int capture_writer_open(struct capture_writer *w, const char *path, uint32_t flags)
{
    memset(w, 0, sizeof *w);
    w->window = CAPTURE_WINDOW_DEFAULT;
    w->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0)
        return -1;
    if (map_window(w) != 0) {
        int e = w->fail_errno;
        close(w->fd);
        w->fd = -1;
        errno = e;
        return -1;
    }
    uint8_t *h = w->map;
    memcpy(h, CAPTURE_MAGIC, 8);
    put32(h + 8, CAPTURE_VERSION);
    put32(h + 12, w->window);
    put32(h + 16, CAPTURE_HEADER_SIZE);
    put32(h + 20, flags);
    return 0;
}

int capture_writer_add(struct capture_writer *w, const uint8_t *rec, size_t len)
{
    if (w->failed || w->map == NULL)
        return -1;
    if (len > CAPTURE_RECORD_MAX)
        return 0;   /* never written: the reader would not accept it */
    if (len > (size_t)(w->room - w->used)) {
        raw_munmap(w->map, w->window);
        w->map = NULL;
        w->index++;
        if (map_window(w) != 0)
            return -1;
    }
    uint8_t *dst = w->chunk + CAPTURE_CHUNK_HEADER + w->used;
    uint32_t h = w->sum;
    if (len <= 32) {
        /* events are a few bytes: copy and checksum in one loop */
        for (size_t i = 0; i < len; i++) {
            dst[i] = rec[i];
            h = (h ^ rec[i]) * 16777619u;
        }
    } else {
        memcpy(dst, rec, len);
        h = capture_fnv1a(h, rec, len);
    }
    w->sum = h;
    put32(w->chunk + 8, w->sum);
    w->used += (uint32_t)len;
    w->bytes += len;
    /* the length last: a reader of a killed target's file sees whole records */
    __atomic_store_n((uint32_t *)(void *)(w->chunk + 4), w->used, __ATOMIC_RELEASE);
    return 0;
}

void capture_writer_close(struct capture_writer *w)
{
    if (w->fd < 0)
        return;
    if (w->map) {
        off_t end = (off_t)(w->index * w->window) + (w->chunk - w->map) + CAPTURE_CHUNK_HEADER +
                    w->used;
        raw_munmap(w->map, w->window);
        w->map = NULL;
        if (ftruncate(w->fd, end) != 0) {
            /* the zeros after the last record read as the end anyway */
        }
    }
    close(w->fd);
    w->fd = -1;
}

void capture_writer_abandon(struct capture_writer *w)
{
    if (w->map)
        raw_munmap(w->map, w->window);
    w->map = NULL;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}
