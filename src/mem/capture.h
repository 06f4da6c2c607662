/*
 * capture.h — the memory capture format written by the allocation tracker
 * (mem/tracker.c, inside the target) and read by `pyrometer mem report`.
 *
 * Owns: the on-disk format (below), its writer (capture_write.c: no malloc,
 * no stdio, safe to run inside malloc itself) and its reader
 * (capture_read.c: untrusted input, every length bounded).  Never prints.
 *
 * Format, version 1 (all integers little-endian):
 *
 *   The file is a sequence of WINDOWS of `window` bytes (header field; 4 MiB
 *   by default).  Window 0 starts with the 32-byte file header:
 *       magic "PYRMMEM\0" (8), u32 version (=1), u32 window size,
 *       u32 header size (=32), u32 flags (CAPTURE_F_*), u64 reserved.
 *   Every window then holds exactly one CHUNK (in window 0 right after the
 *   header):
 *       u32 magic 0x4b4e4843 ("CHNK"), u32 payload length, u32 FNV-1a of the
 *       payload, u32 window index; then the payload: whole records.
 *   The writer keeps the chunk header up to date after every record (payload
 *   first, then checksum, then length), through a shared mapping of the file:
 *   a target killed at any instant leaves every record before the last one
 *   whole and covered by the checksum.  A window whose chunk magic is 0 ends
 *   the capture (the writer reserves windows with fallocate, so a killed
 *   target leaves zeros); a length past the window or a wrong checksum ends
 *   it too, keeping what came before (reported as truncated).
 *
 *   Records: one tag byte, then unsigned LEB128 varints ("u") and zigzag
 *   varints ("s"); ids count from 1 in order of definition per table, 0 means
 *   none.  Definitions always precede their first use.
 *       META      key-len u, key, value-len u, value      (strings <= 4 KiB)
 *       STRING    len u, bytes                             → string id
 *       CODE      name u, file u, firstline s, table-len u, table bytes
 *                                                          → code id
 *       PYFRAME   code u, pos s      (bytecode position in the line table's
 *                                     unit; linetable.h)  → frame id
 *       NATFRAME  lib u (string), offset u (in the file), symbol u (string,
 *                 0 = resolve offline)                    → frame id
 *       STACK     parent u, frame u  (parent 0 = root)     → stack id
 *       THREAD    index u, os tid u  (later events are this thread's)
 *       ALLOC     addr-delta s, size u, stack u   (addr-delta from the
 *                 previous ALLOC/FREE/MMAP/MUNMAP address)
 *       FREE      addr-delta s
 *       MMAP      addr-delta s, size u, stack u
 *       MUNMAP    addr-delta s, size u
 *       TIME      ns-delta u (since the previous TIME; the first is since
 *                 the start), rss u (bytes, 0 = unknown)
 *       NOTE      len u, text
 *       END       (the process exited normally)
 *       FINALIZING  (the interpreter began to shut down: the script, its
 *                 atexit handlers and non-daemon threads are done; what is
 *                 live here is what the program kept — `--leaks`)
 *   In sampled mode (flag SAMPLED, META "sample_bytes"), ALLOC and MMAP sizes
 *   are the sampled sizes scaled by 1/p so totals stay unbiased, and FREE is
 *   written only for sampled blocks.
 */
#ifndef PYROMETER_CAPTURE_H
#define PYROMETER_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define CAPTURE_MAGIC "PYRMMEM"          /* 8 bytes with its NUL */
#define CAPTURE_VERSION 1u
#define CAPTURE_HEADER_SIZE 32u
#define CAPTURE_CHUNK_MAGIC 0x4b4e4843u
#define CAPTURE_CHUNK_HEADER 16u
#define CAPTURE_WINDOW_DEFAULT (4u << 20)
#define CAPTURE_WINDOW_MIN 4096u
#define CAPTURE_WINDOW_MAX (64u << 20)
#define CAPTURE_STR_MAX 4096u            /* longest STRING / META value / NOTE */
#define CAPTURE_TABLE_MAX (1u << 20)     /* longest line table in a CODE record */

enum capture_flags {
    CAPTURE_F_SAMPLED = 1u,
    CAPTURE_F_NATIVE = 2u,
    CAPTURE_F_PYTHON = 4u,               /* Python stacks are recorded */
};

enum capture_tag {
    CAPTURE_META = 1,
    CAPTURE_STRING,
    CAPTURE_CODE,
    CAPTURE_PYFRAME,
    CAPTURE_NATFRAME,
    CAPTURE_STACK,
    CAPTURE_THREAD,
    CAPTURE_ALLOC,
    CAPTURE_FREE,
    CAPTURE_MMAP,
    CAPTURE_MUNMAP,
    CAPTURE_TIME,
    CAPTURE_NOTE,
    CAPTURE_END,
    CAPTURE_FINALIZING,
    CAPTURE_TAG_LIMIT,
};

/* Largest single record the writer accepts (a CODE record with its table). */
#define CAPTURE_RECORD_MAX (CAPTURE_TABLE_MAX + 64u)

/* ---- encoding helpers (shared by writer, reader and tests) ------------- */

uint32_t capture_fnv1a(uint32_t h, const uint8_t *p, size_t n);
#define CAPTURE_FNV_INIT 2166136261u

static inline size_t capture_put_u(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static inline size_t capture_put_s(uint8_t *out, int64_t v)
{
    return capture_put_u(out, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* ---- writer ------------------------------------------------------------- */

/* Writes through a shared mapping of one window at a time; never calls
 * malloc or stdio (runs inside the target's allocator). */
struct capture_writer {
    int fd;
    uint32_t window;           /* window size */
    uint64_t index;            /* current window */
    uint8_t *map;              /* the current window's mapping, NULL when failed */
    uint8_t *chunk;            /* its chunk header */
    uint32_t used;             /* payload bytes in the current chunk */
    uint32_t room;             /* payload capacity of the current chunk */
    uint32_t sum;              /* running FNV-1a of the payload */
    int failed;                /* a write failed (disk full...): nothing more is written */
    int fail_errno;
    uint64_t bytes;            /* payload bytes written in all */
};

/* Create the file (truncating it) and write the header.  0, or -1 with errno. */
int capture_writer_open(struct capture_writer *w, const char *path, uint32_t flags);
/* Append one record (tag and body of len bytes) as a whole, moving to the
 * next window when it does not fit.  0, or -1 once the writer has failed. */
int capture_writer_add(struct capture_writer *w, const uint8_t *rec, size_t len);
/* Unmap and truncate the file to what was written; closes the fd. */
void capture_writer_close(struct capture_writer *w);
/* After fork, in the child: drop the parent's mapping without touching the
 * file (it still belongs to the parent), and close our copy of the fd. */
void capture_writer_abandon(struct capture_writer *w);

/* ---- reader ------------------------------------------------------------- */

/* One decoded record.  Pointers point into the mapped capture and stay valid
 * until capture_close. */
struct capture_record {
    enum capture_tag tag;
    uint64_t a, b, c;          /* the record's integer fields, in order */
    int64_t s;                 /* the signed field (pos, firstline, addr delta) */
    const uint8_t *data;       /* META key / STRING / NOTE bytes / CODE table */
    size_t len;
    const uint8_t *data2;      /* META value */
    size_t len2;
};

struct capture_file {
    const uint8_t *base;
    size_t size;
    uint32_t window, flags, version;
    /* cursor */
    uint64_t index;            /* current window */
    const uint8_t *pos, *end;  /* remaining payload of the current chunk */
    int done;
    int truncated;             /* the capture ended without an END record or mid-way */
    char why[160];             /* why reading stopped early */
    int has_end;
    uint64_t records, chunks, payload_bytes;
    int mapped;                /* base is our mmap of the file */
};

/* Open (mmap) a capture.  PM_ENOTFOUND / PM_EPERM for the file, PM_EFORMAT
 * when it is not a pyrometer memory capture (or an unknown version). */
int capture_open(const char *path, struct capture_file *f, struct pm_error *err);
/* Parse a capture already in memory (tests, fuzzing); buf is borrowed. */
int capture_open_buffer(const uint8_t *buf, size_t len, struct capture_file *f,
                        struct pm_error *err);
/* Start again from the first record. */
void capture_rewind(struct capture_file *f);
/* The next record: 1 and *r filled, 0 at the end (f->truncated and f->why
 * say whether it ended early).  Malformed records end the capture there. */
int capture_next(struct capture_file *f, struct capture_record *r);
/* Position of the cursor, as a fraction of the file (progress display). */
double capture_progress(const struct capture_file *f);
void capture_close(struct capture_file *f);

#endif
