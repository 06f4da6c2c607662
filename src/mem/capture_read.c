/*
 * capture_read.c — reading a memory capture (format: capture.h).
 *
 * The file is untrusted: a killed target leaves a partly written window, a
 * full disk a missing one, and anything else may be garbage.  Every varint is
 * bounded (10 bytes), every length checked against the chunk, every chunk
 * checked against its window and checksum.  The first thing that does not
 * hold ends the capture there, keeping every record before it.  Never prints.
 */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

int capture_open_buffer(const uint8_t *buf, size_t len, struct capture_file *f,
                        struct pm_error *err)
{
    memset(f, 0, sizeof *f);
    if (len < CAPTURE_HEADER_SIZE + CAPTURE_CHUNK_HEADER || memcmp(buf, CAPTURE_MAGIC, 8) != 0)
        return pm_fail(err, PM_EFORMAT, "not a pyrometer memory capture");
    f->version = get32(buf + 8);
    f->window = get32(buf + 12);
    f->flags = get32(buf + 20);
    if (f->version != CAPTURE_VERSION)
        return pm_fail(err, PM_EFORMAT,
                       "memory capture format version %u is not supported (this pyrometer "
                       "reads version %u)", f->version, CAPTURE_VERSION);
    if (get32(buf + 16) != CAPTURE_HEADER_SIZE || f->window < CAPTURE_WINDOW_MIN ||
        f->window > CAPTURE_WINDOW_MAX)
        return pm_fail(err, PM_EFORMAT, "damaged memory capture: implausible header");
    f->base = buf;
    f->size = len;
    capture_rewind(f);
    return 0;
}

int capture_open(const char *path, struct capture_file *f, struct pm_error *err)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return pm_fail(err, e == ENOENT ? PM_ENOTFOUND : e == EACCES ? PM_EPERM : PM_EFORMAT,
                       "cannot open capture %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pm_fail(err, PM_EFORMAT, "%s is not a pyrometer memory capture (not a regular file)",
                       path);
    }
    if ((size_t)st.st_size < CAPTURE_HEADER_SIZE + CAPTURE_CHUNK_HEADER) {
        close(fd);
        return pm_fail(err, PM_EFORMAT, "%s is not a pyrometer memory capture (%lld bytes)", path,
                       (long long)st.st_size);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return pm_fail(err, PM_EFORMAT, "cannot map capture %s: %s", path, strerror(errno));
    if (capture_open_buffer(m, (size_t)st.st_size, f, err) != 0) {
        munmap(m, (size_t)st.st_size);
        return pm_wrap(err, "%s", path);
    }
    f->mapped = 1;
    return 0;
}

static void stop(struct capture_file *f, int truncated, const char *why)
{
    f->done = 1;
    f->pos = f->end = NULL;
    if (truncated && !f->truncated) {
        f->truncated = 1;
        strncpy(f->why, why, sizeof f->why - 1);
    }
}

/* Enter window f->index: 0 when its chunk is good, -1 when the capture ends. */
static int enter_window(struct capture_file *f)
{
    uint64_t off = f->index * (uint64_t)f->window;
    uint64_t start = off + (f->index == 0 ? CAPTURE_HEADER_SIZE : 0);
    if (start + CAPTURE_CHUNK_HEADER > f->size) {
        stop(f, !f->has_end, "the capture has no end record (the program was killed, crashed or called _exit)");
        return -1;
    }
    const uint8_t *c = f->base + start;
    uint32_t magic = get32(c), len = get32(c + 4), sum = get32(c + 8), idx = get32(c + 12);
    if (magic == 0) {
        stop(f, !f->has_end, "the capture has no end record (the program was killed, crashed or called _exit)");
        return -1;
    }
    uint64_t limit = off + f->window;
    if (limit > f->size)
        limit = f->size;
    if (magic != CAPTURE_CHUNK_MAGIC || idx != (uint32_t)f->index ||
        start + CAPTURE_CHUNK_HEADER + len > limit) {
        stop(f, 1, "damaged or truncated chunk: the rest of the capture is ignored");
        return -1;
    }
    const uint8_t *payload = c + CAPTURE_CHUNK_HEADER;
    if (capture_fnv1a(CAPTURE_FNV_INIT, payload, len) != sum) {
        stop(f, 1, "chunk checksum mismatch: the rest of the capture is ignored");
        return -1;
    }
    f->pos = payload;
    f->end = payload + len;
    f->chunks++;
    f->payload_bytes += len;
    return 0;
}

void capture_rewind(struct capture_file *f)
{
    f->index = 0;
    f->done = 0;
    f->truncated = 0;
    f->why[0] = '\0';
    f->records = f->chunks = f->payload_bytes = 0;
    int had_end = f->has_end;
    f->has_end = 0;
    if (enter_window(f) != 0 && had_end) {
        /* unreachable for a good file; keep the flags of this pass */
    }
}

static int get_u(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        if (shift == 63 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int get_s(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    uint64_t u;
    if (get_u(p, end, &u) != 0)
        return -1;
    *out = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
    return 0;
}

static int get_bytes(const uint8_t **p, const uint8_t *end, size_t max, const uint8_t **data,
                     size_t *len)
{
    uint64_t n;
    if (get_u(p, end, &n) != 0 || n > max || n > (uint64_t)(end - *p))
        return -1;
    *data = *p;
    *len = (size_t)n;
    *p += n;
    return 0;
}

/* Decode one record at *p; -1 when malformed. */
static int decode(const uint8_t **p, const uint8_t *end, struct capture_record *r)
{
    memset(r, 0, sizeof *r);
    uint8_t tag = *(*p)++;
    r->tag = (enum capture_tag)tag;
    switch (tag) {
    case CAPTURE_META:
        return get_bytes(p, end, CAPTURE_STR_MAX, &r->data, &r->len) ||
               get_bytes(p, end, CAPTURE_STR_MAX, &r->data2, &r->len2) ? -1 : 0;
    case CAPTURE_STRING:
    case CAPTURE_NOTE:
        return get_bytes(p, end, CAPTURE_STR_MAX, &r->data, &r->len);
    case CAPTURE_CODE:
        return get_u(p, end, &r->a) || get_u(p, end, &r->b) || get_s(p, end, &r->s) ||
               get_bytes(p, end, CAPTURE_TABLE_MAX, &r->data, &r->len) ? -1 : 0;
    case CAPTURE_PYFRAME:
        return get_u(p, end, &r->a) || get_s(p, end, &r->s) ? -1 : 0;
    case CAPTURE_NATFRAME:
        return get_u(p, end, &r->a) || get_u(p, end, &r->b) || get_u(p, end, &r->c) ? -1 : 0;
    case CAPTURE_STACK:
    case CAPTURE_THREAD:
        return get_u(p, end, &r->a) || get_u(p, end, &r->b) ? -1 : 0;
    case CAPTURE_ALLOC:
    case CAPTURE_MMAP:
        return get_s(p, end, &r->s) || get_u(p, end, &r->a) || get_u(p, end, &r->b) ? -1 : 0;
    case CAPTURE_FREE:
        return get_s(p, end, &r->s);
    case CAPTURE_MUNMAP:
        return get_s(p, end, &r->s) || get_u(p, end, &r->a) ? -1 : 0;
    case CAPTURE_TIME:
        return get_u(p, end, &r->a) || get_u(p, end, &r->b) ? -1 : 0;
    case CAPTURE_END:
    case CAPTURE_FINALIZING:
        return 0;
    default:
        return -1;
    }
}

int capture_next(struct capture_file *f, struct capture_record *r)
{
    while (!f->done) {
        if (f->pos < f->end) {
            const uint8_t *p = f->pos;
            if (decode(&p, f->end, r) != 0) {
                stop(f, 1, "malformed record: the rest of the capture is ignored");
                return 0;
            }
            f->pos = p;
            f->records++;
            if (r->tag == CAPTURE_END)
                f->has_end = 1;
            return 1;
        }
        f->index++;
        if (enter_window(f) != 0)
            return 0;
    }
    return 0;
}

double capture_progress(const struct capture_file *f)
{
    if (f->size == 0)
        return 1.0;
    uint64_t at = f->pos ? (uint64_t)(f->pos - f->base) : f->size;
    return (double)at / (double)f->size;
}

void capture_close(struct capture_file *f)
{
    if (f->mapped && f->base)
        munmap((void *)f->base, f->size);
    memset(f, 0, sizeof *f);
}
