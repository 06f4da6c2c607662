/*
 * capture_read.c — reading a memory capture (format: capture.h).
 *
 * The file is untrusted: a killed target leaves partly written blocks, a
 * full disk a missing one, and anything else may be garbage.  capture_open
 * walks every block once and decodes every record (varints bounded to 10
 * bytes, lengths checked against the block, sealed blocks against their
 * checksum); the first thing that does not hold ends the capture there,
 * keeping every record before it in the file.  That walk also makes the
 * index the cursor follows: each stream's blocks in order, and the segments
 * (MARK records) sorted by their number, so capture_next returns stream 0
 * whole and then every thread's events in the order they happened.
 * Never prints.
 */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NONE UINT32_MAX

struct capture_block {
    uint64_t off;              /* of the block in the file */
    uint64_t data;             /* of the payload to read (a window's, for its part) */
    uint32_t stream, used;     /* stream id, payload bytes to read */
    uint32_t sealed;
    uint32_t dense;            /* index of the stream */
    uint32_t next;             /* the stream's next block, NONE */
};

struct capture_segment {
    uint64_t seq;
    uint32_t block, pos;       /* where its records start (after the MARK) */
    uint64_t order;            /* file order, to break ties */
};

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
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

/* Decode one record at *p of a version-`version` capture; -1 when
 * malformed.  A short fixed event's address is its low 32 bits here
 * (capture_next adds the stream's upper ones). */
static int decode(const uint8_t **p, const uint8_t *end, struct capture_record *r,
                  uint32_t version)
{
    memset(r, 0, sizeof *r);
    uint8_t first = **p;
    uint32_t kind = first & CAPTURE_FIXED_MASK;
    if (kind) {
        size_t len = kind == CAPTURE_FIXED_FREE    ? CAPTURE_FIXED_FREE_LEN
                     : kind == CAPTURE_FIXED_ALLOC ? CAPTURE_FIXED_ALLOC_LEN
                     : version < 6                 ? 0
                     : kind == CAPTURE_FIXED_FREE4 ? CAPTURE_FIXED_FREE4_LEN
                     : kind == CAPTURE_FIXED_ALLOC8 ? CAPTURE_FIXED_ALLOC8_LEN
                                                    : 0;
        if (len == 0 || len > (size_t)(end - *p))
            return -1;
        r->tag = kind == CAPTURE_FIXED_FREE || kind == CAPTURE_FIXED_FREE4 ? CAPTURE_FREE
                                                                           : CAPTURE_ALLOC;
        if (kind >= CAPTURE_FIXED_FREE4) {
            /* the low 32 bits of the address; ALLOC8: (size - 1) | stack << shift */
            r->fixed = 2;
            r->addr = get32(*p) & ~(uint32_t)CAPTURE_FIXED_MASK;
            if (kind == CAPTURE_FIXED_ALLOC8) {
                uint32_t v = get32(*p + 4);
                r->a = (v & (CAPTURE_ALLOC8_SIZE_MAX - 1)) + 1;
                r->b = v >> CAPTURE_ALLOC8_STACK_SHIFT;
            }
            *p += len;
            return 0;
        }
        /* the address (48 bits), and an allocation's size and stack */
        uint8_t w[8] = {0};
        memcpy(w, *p, 6);
        uint64_t a = 0;
        for (int i = 5; i >= 0; i--)
            a = (a << 8) | w[i];
        r->fixed = 1;
        r->addr = a & ~(uint64_t)CAPTURE_FIXED_MASK;
        if (kind == CAPTURE_FIXED_ALLOC) {
            r->a = get32(*p + 6);
            r->b = get32(*p + 10);
        }
        *p += len;
        return 0;
    }
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
    case CAPTURE_MARK:
        return get_u(p, end, &r->a);
    case CAPTURE_END:
        return get_u(p, end, &r->a);
    case CAPTURE_FINALIZING:
        return 0;
    default:
        return -1;
    }
}

static void stop(struct capture_file *f, const char *why)
{
    if (!f->truncated) {
        f->truncated = 1;
        snprintf(f->why, sizeof f->why, "%s", why);
    }
}

/* The tracker stopped recording when the capture could not grow. */
static void stop_errno(struct capture_file *f, uint32_t e)
{
    char why[sizeof f->why];
    const char *what = e == ENOSPC   ? "its file system was full"
                       : e == EDQUOT ? "the disk quota was reached"
                       : e == EFBIG  ? "it reached the largest file size allowed"
                                     : NULL;
    if (what)
        snprintf(why, sizeof why, "the recording stopped when the capture could not grow (%s): "
                                  "everything before is reported", what);
    else
        snprintf(why, sizeof why, "the recording stopped when writing the capture failed "
                                  "(%s): everything before is reported", strerror((int)e));
    stop(f, why);
}

static void index_free(struct capture_file *f)
{
    free(f->blocks);
    free(f->segments);
    free(f->last_addr);
    f->blocks = NULL;
    f->segments = NULL;
    f->last_addr = f->high = NULL;
    f->nblocks = f->nsegments = f->nstreams = 0;
}

int capture_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need < *cap)
        return 0;
    uint32_t c = *cap ? *cap : 64;
    while (c <= need) {
        if (c > UINT32_MAX / 2)
            return -1;
        c *= 2;
    }
    void *p = realloc(*arr, (size_t)c * elem);
    if (p == NULL)
        return -1;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(c - *cap) * elem);
    *arr = p;
    *cap = c;
    return 0;
}

static int add_segment(struct capture_file *f, uint32_t *cap, uint64_t seq, uint32_t block,
                       uint32_t pos, uint64_t order)
{
    if (capture_grow((void **)&f->segments, cap, f->nsegments, sizeof *f->segments) != 0)
        return -1;
    f->segments[f->nsegments++] = (struct capture_segment){seq, block, pos, order};
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_segment(const void *a, const void *b)
{
    const struct capture_segment *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* A window of the file (capture.h): the records of its block past `from`. */
struct window_ref {
    uint64_t off;              /* of the window */
    uint64_t block;            /* of its block */
    uint32_t stream, from, upto;
    uint32_t data;             /* where payload position `from` is in the window */
};

/* Whether p is padding: a zero byte at a chunk's end (format 5+), which
 * the reader passes over. */
static int padding_at(const struct capture_file *f, const uint8_t *p)
{
    return *p == 0 && f->version >= 5;
}

static int add_block(struct capture_file *f, uint32_t *bcap, const struct capture_block *b)
{
    if (capture_grow((void **)&f->blocks, bcap, f->nblocks, sizeof *f->blocks) != 0)
        return -1;
    f->blocks[f->nblocks++] = *b;
    return 0;
}

/* Decode every record of block b's payload (the cursor can then trust it),
 * noting its segments; shortens b->used to the records that decode, and
 * returns 1 when some did not (the capture ends there). */
static int scan_payload(struct capture_file *f, struct capture_block *b, uint32_t bi,
                        uint32_t *scap, uint64_t *order, int *has_end, uint64_t *end_size,
                        struct pm_error *err)
{
    const uint8_t *payload = f->base + b->data;
    const uint8_t *p = payload, *end = payload + b->used;
    struct capture_record r;
    while (p < end) {
        const uint8_t *at = p;
        if (padding_at(f, p)) {
            p++;
            continue;
        }
        if (decode(&p, end, &r, f->version) != 0) {
            b->used = (uint32_t)(at - payload);
            stop(f, "malformed record: the rest of the capture is ignored");
            return 1;
        }
        if (r.tag == CAPTURE_MARK) {
            if (b->stream != 0 &&
                add_segment(f, scap, r.a, bi, (uint32_t)(p - payload), (*order)++) != 0)
                return pm_fail(err, PM_ENOMEM, "out of memory reading the capture");
            continue;
        }
        if (r.tag == CAPTURE_END) {
            *has_end = 1;
            *end_size = r.a;
        }
        f->total_records++;
    }
    return 0;
}

static int cmp_block_off(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = ((const struct capture_block *)b)->off;
    return x < y ? -1 : x > y;
}

/* The records of each window past its block's used, as one more block of
 * its stream, read after that block.  Only for a block that is its
 * stream's last in the file and not sealed: anything else is a window the
 * writer left behind or gave to another stream. */
static int add_windows(struct capture_file *f, const struct window_ref *wins, uint32_t nwins,
                       uint32_t nfile, uint32_t *bcap, uint32_t *scap, uint64_t *order,
                       int *has_end, uint64_t *end_size, struct pm_error *err)
{
    for (uint32_t i = 0; i < nwins && nfile > 0; i++) {
        const struct window_ref *w = &wins[i];
        const struct capture_block *k =
            bsearch(&w->block, f->blocks, nfile, sizeof *f->blocks, cmp_block_off);
        if (k == NULL || k->stream != w->stream || k->sealed || w->from > k->used ||
            w->upto <= k->used)
            continue;
        int last = 1;
        for (uint32_t j = (uint32_t)(k - f->blocks) + 1; j < nfile && last; j++)
            last = f->blocks[j].stream != w->stream;
        if (!last)
            continue;
        struct capture_block b = {w->off, w->off + w->data + (k->used - w->from),
                                  w->stream, w->upto - k->used, 0, 0, NONE};
        int rc = scan_payload(f, &b, f->nblocks, scap, order, has_end, end_size, err);
        if (rc < 0)
            return -1;
        if (add_block(f, bcap, &b) != 0)
            return pm_fail(err, PM_ENOMEM, "out of memory reading the capture");
        f->payload_bytes += b.used;
    }
    return 0;
}

/* Walk and check every block; build blocks, streams and segments. */
static int build_index(struct capture_file *f, struct pm_error *err)
{
    uint32_t bcap = 0, scap = 0, nwins = 0, wcap = 0;
    struct window_ref *wins = NULL;
    int has_end = 0;
    uint64_t order = 0, end_size = 0;
    for (uint64_t off = f->align; off < f->size;) {
        if (off + CAPTURE_BLOCK_HEADER > f->size) {
            stop(f, "the capture is cut short: the rest of it is missing");
            break;
        }
        const uint8_t *h = f->base + off;
        uint32_t magic = get32(h), used = get32(h + 4), size = get32(h + 8), stream = get32(h + 12);
        uint32_t sum = get32(h + 16), sealed = get32(h + 20);
        if (magic == 0)
            break;
        if (magic == CAPTURE_WINDOW_MAGIC && f->version >= 4 && size >= f->align &&
            size % f->align == 0 && size <= CAPTURE_BLOCK_MAX) {
            /* used is upto, sum the block's offset / align, sealed from */
            uint32_t data = f->version >= 5 ? get32(h + 24) : CAPTURE_BLOCK_HEADER;
            if (off + size <= f->size && used > sealed && data >= CAPTURE_BLOCK_HEADER &&
                data <= size && used - sealed <= size - data && sum != 0) {
                if (capture_grow((void **)&wins, &wcap, nwins, sizeof *wins) != 0) {
                    free(wins);
                    return pm_fail(err, PM_ENOMEM, "out of memory reading the capture");
                }
                wins[nwins++] = (struct window_ref){off, (uint64_t)sum * f->align, stream, sealed,
                                                    used, data};
            }
            off += size;
            continue;
        }
        if (magic != CAPTURE_BLOCK_MAGIC || size < f->align || size % f->align ||
            size > CAPTURE_BLOCK_MAX || used > size - CAPTURE_BLOCK_HEADER || sealed > 1) {
            stop(f, "damaged block: the rest of the capture is ignored");
            break;
        }
        int cut = 0;
        uint64_t avail = f->size - off - CAPTURE_BLOCK_HEADER;
        if (used > avail) {
            used = (uint32_t)avail;   /* the file ends inside the block */
            cut = 1;
            stop(f, "the capture is cut short: the rest of it is missing");
        }
        const uint8_t *payload = h + CAPTURE_BLOCK_HEADER;
        if (sealed && !cut && capture_checksum(payload, used) != sum) {
            stop(f, "block checksum mismatch: the rest of the capture is ignored");
            break;
        }
        /* a block cut short is read as far as it goes, with no window */
        struct capture_block b = {off, off + CAPTURE_BLOCK_HEADER, stream, used, sealed || cut, 0,
                                  NONE};
        int rc = scan_payload(f, &b, f->nblocks, &scap, &order, &has_end, &end_size, err);
        if (rc < 0 || add_block(f, &bcap, &b) != 0) {
            free(wins);
            return rc < 0 ? -1 : pm_fail(err, PM_ENOMEM, "out of memory reading the capture");
        }
        f->payload_bytes += b.used;
        if (cut || rc)
            break;
        off += size;
    }
    int rc = add_windows(f, wins, nwins, f->nblocks, &bcap, &scap, &order, &has_end, &end_size,
                         err);
    free(wins);
    if (rc != 0)
        return -1;
    if (!has_end && f->stopped_errno != 0)
        stop_errno(f, f->stopped_errno);
    else if (!has_end)
        stop(f, "the capture has no end record (the program was killed, crashed or called _exit)");
    else if (end_size > f->size)
        stop(f, "the capture is cut short: the rest of it is missing");
    f->has_end = has_end;

    /* streams: dense indices, and each stream's blocks linked in order */
    uint32_t *ids = malloc(((size_t)f->nblocks + 1) * sizeof *ids);
    if (ids == NULL)
        return pm_fail(err, PM_ENOMEM, "out of memory reading the capture");
    for (uint32_t i = 0; i < f->nblocks; i++)
        ids[i] = f->blocks[i].stream;
    qsort(ids, f->nblocks, sizeof *ids, cmp_u32);
    uint32_t n = 0;
    for (uint32_t i = 0; i < f->nblocks; i++)
        if (n == 0 || ids[n - 1] != ids[i])
            ids[n++] = ids[i];
    f->nstreams = n;
    uint32_t *last = malloc(((size_t)n + 1) * sizeof *last);
    /* each stream's delta base, then its short events' upper bits */
    f->last_addr = calloc(2 * ((size_t)n + 1), sizeof *f->last_addr);
    if (last == NULL || f->last_addr == NULL) {
        free(ids);
        free(last);
        return pm_fail(err, PM_ENOMEM, "out of memory reading the capture");
    }
    f->high = f->last_addr + n + 1;
    for (uint32_t i = 0; i < n; i++)
        last[i] = NONE;
    for (uint32_t i = 0; i < f->nblocks; i++) {
        const uint32_t *at = bsearch(&f->blocks[i].stream, ids, n, sizeof *ids, cmp_u32);
        uint32_t d = (uint32_t)(at - ids);
        f->blocks[i].dense = d;
        if (last[d] != NONE) {
            f->blocks[last[d]].next = i;
        } else if (f->blocks[i].stream != 0) {
            /* events before a thread's first MARK (not written by the
             * tracker, which starts with one) are read first */
            const uint8_t *first = f->base + f->blocks[i].data;
            if (f->blocks[i].used > 0 && first[0] != CAPTURE_MARK &&
                add_segment(f, &scap, 0, i, 0, 0) != 0) {
                free(ids);
                free(last);
                return pm_fail(err, PM_ENOMEM, "out of memory reading the capture");
            }
        }
        last[d] = i;
    }
    free(ids);
    free(last);
    if (f->nsegments)
        qsort(f->segments, f->nsegments, sizeof *f->segments, cmp_segment);
    return 0;
}

int capture_open_buffer(const uint8_t *buf, size_t len, struct capture_file *f,
                        struct pm_error *err)
{
    memset(f, 0, sizeof *f);
    if (len < CAPTURE_HEADER_SIZE || memcmp(buf, CAPTURE_MAGIC, 8) != 0)
        return pm_fail(err, PM_EFORMAT, "not a pyrometer memory capture");
    f->version = get32(buf + 8);
    f->align = get32(buf + 12);
    f->flags = get32(buf + 20);
    f->stopped_errno = get32(buf + 24);
    if (f->version < CAPTURE_VERSION_OLDEST || f->version > CAPTURE_VERSION)
        return pm_fail(err, PM_EFORMAT,
                       "memory capture format version %u is not supported (this pyrometer "
                       "reads versions %u to %u)", f->version, CAPTURE_VERSION_OLDEST,
                       CAPTURE_VERSION);
    if (get32(buf + 16) != CAPTURE_HEADER_SIZE || f->align != CAPTURE_ALIGN)
        return pm_fail(err, PM_EFORMAT, "damaged memory capture: implausible header");
    f->base = buf;
    f->size = len;
    if (build_index(f, err) != 0) {
        index_free(f);
        return -1;
    }
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
    if ((size_t)st.st_size < CAPTURE_HEADER_SIZE) {
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

/* Point the cursor at block b from payload offset pos. */
static void enter(struct capture_file *f, uint32_t b, uint32_t pos)
{
    const struct capture_block *k = &f->blocks[b];
    const uint8_t *payload = f->base + k->data;
    f->block = b;
    f->pos = payload + pos;
    f->end = payload + k->used;
    f->stream_index = k->dense;
}

/* Position at the start of segment f->segment, or finish. */
static void enter_segment(struct capture_file *f)
{
    if (f->segment >= f->nsegments) {
        f->done = 1;
        f->pos = f->end = NULL;
        return;
    }
    const struct capture_segment *s = &f->segments[f->segment];
    enter(f, s->block, s->pos);
}

void capture_rewind(struct capture_file *f)
{
    f->done = 0;
    f->records = 0;
    f->phase = 0;
    f->segment = 0;
    f->pos = f->end = NULL;
    if (f->last_addr)
        memset(f->last_addr, 0, 2 * ((size_t)f->nstreams + 1) * sizeof *f->last_addr);
    /* stream 0, when there is one, is the first block of the lowest id */
    if (f->nblocks) {
        for (uint32_t i = 0; i < f->nblocks; i++) {
            if (f->blocks[i].stream == 0) {
                enter(f, i, 0);
                return;
            }
        }
    }
    f->phase = 1;
    enter_segment(f);
}

int capture_next(struct capture_file *f, struct capture_record *r)
{
    while (!f->done) {
        if (f->pos < f->end) {
            const uint8_t *p = f->pos;
            if (padding_at(f, p)) {
                f->pos++;
                continue;
            }
            if (decode(&p, f->end, r, f->version) != 0) {
                /* only when the file changed under us */
                stop(f, "malformed record: the rest of the capture is ignored");
                f->done = 1;
                return 0;
            }
            if (r->tag == CAPTURE_MARK) {
                if (f->phase == 1) {
                    /* the thread's next segment: go on with the following one */
                    f->segment++;
                    enter_segment(f);
                } else {
                    f->pos = p;
                }
                continue;
            }
            f->pos = p;
            r->stream = f->blocks[f->block].stream;
            if (r->fixed == 2) {
                r->addr |= f->high[f->stream_index] << 32;
            } else if (r->fixed) {
                f->high[f->stream_index] = r->addr >> 32;
            } else if (r->tag == CAPTURE_ALLOC || r->tag == CAPTURE_FREE ||
                       r->tag == CAPTURE_MMAP || r->tag == CAPTURE_MUNMAP) {
                uint64_t *last = &f->last_addr[f->stream_index];
                *last += (uint64_t)r->s;
                r->addr = *last;
            }
            f->records++;
            return 1;
        }
        /* the end of a block: the stream goes on in its next one */
        uint32_t next = f->blocks[f->block].next;
        if (next != NONE) {
            enter(f, next, 0);
            continue;
        }
        if (f->phase == 0) {
            f->phase = 1;
            f->segment = 0;
        } else {
            f->segment++;
        }
        enter_segment(f);
    }
    return 0;
}

double capture_progress(const struct capture_file *f)
{
    if (f->total_records == 0)
        return 1.0;
    double d = (double)f->records / (double)f->total_records;
    return d > 1.0 ? 1.0 : d;
}

void capture_close(struct capture_file *f)
{
    if (f->mapped && f->base)
        munmap((void *)f->base, f->size);
    index_free(f);
    memset(f, 0, sizeof *f);
}
