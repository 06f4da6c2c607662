/*
 * capture.h — the memory capture format written by the allocation tracker
 * (mem/tracker.c, inside the target) and read by `pyrometer mem report`.
 *
 * Owns: the on-disk format (below), its writer (capture_write.c: no malloc,
 * no stdio, safe to run inside malloc itself) and its reader
 * (capture_read.c: untrusted input, every length bounded).  Never prints.
 *
 * Format, version 6 (all integers little-endian; versions 3 to 5 are read
 * too: 3 is 4 without windows, 4 is 5 without chunks, so without padding,
 * and with a window's data right after its header; 5 is 6 without the
 * short fixed events, FREE4 and ALLOC8):
 *
 *   The file starts with a 32-byte header in a page of its own (`align`
 *   bytes):  magic "PYRMMEM\0" (8), u32 version (=6), u32 align (block
 *   alignment, 4096), u32 header size (=32), u32 flags (CAPTURE_F_*), u32
 *   stopped (0, or the errno of the write that failed and stopped the
 *   recording: ENOSPC when the file system filled up; written in place,
 *   which needs no new space), u32 reserved.  Then BLOCKS and WINDOWS, back
 *   to back from offset `align`, each a multiple of `align` bytes.  A block:
 *       u32 magic 0x4b4c4250 ("PBLK"), u32 used (payload bytes), u32 size
 *       (the whole block), u32 stream, u32 checksum, u32 sealed, u64 0;
 *   then the payload: whole records.  A window:
 *       u32 magic 0x4e495750 ("PWIN"), u32 upto, u32 size, u32 stream,
 *       u32 block (the file offset of the block it belongs to / align),
 *       u32 from, u32 data (where in the window the byte of payload
 *       position `from` is: at least 32; version 4: always 32), u32 0;
 *   then window data: the bytes [from, upto) of that block's payload, whole
 *   records, which may not be in the block yet.  A window naming block 0
 *   holds nothing (also the filler the writer puts before a block that
 *   must start on a chunk).
 *
 *   WRITING THROUGH WINDOWS: a stream writes its records into its window,
 *   a shared mapping of the file that it keeps and reuses (no page of it
 *   faults twice), and stores `upto` after every record.  When the window
 *   fills, its data is copied (pwrite) into the block at `from`, the
 *   block's `used` is written, then the window restarts at from = upto.
 *   So a target killed at any instant leaves every record whole: up to
 *   `used` in the block, and the rest, from `used` to `upto`, in the
 *   window, whose data overlaps the block's where the two disagree on
 *   nothing.  The reader takes a window's bytes beyond its block's `used`
 *   when the block is its stream's last and not sealed (a finished stream
 *   has copied everything into its blocks, and a window given to another
 *   stream names that stream and its block).
 *
 *   CHUNKS: a block of CAPTURE_CHUNK (64 KiB) or more starts at a file
 *   offset that is a multiple of it and is a multiple of it long; a window
 *   holds one chunk of its block (the file's bytes between two multiples
 *   of CAPTURE_CHUNK; the block's first chunk with its header, which the
 *   window keeps a copy of), and a record that does not fit in what is
 *   left of the chunk goes to the next one, the rest of this one padded
 *   with zero bytes.  A zero byte where a record would start is padding
 *   and is passed over.  So the copies are whole, aligned chunks, which
 *   the kernel can keep as one 64 KiB page-cache folio instead of 17
 *   pages (ext4 on Linux 6.18 here: 336 MB in 64 KiB pwrites took 0.09 s
 *   of system time aligned, 0.17 s at version 4's offsets; the writer
 *   itself writing 336 MB of events, 0.115 s against version 4's 0.17 s,
 *   medians of 5).  Smaller blocks are one chunk each.
 *
 *   STREAMS: stream 0 is the process's (META, NOTE, THREAD and every
 *   definition, written under the tracker's lock); stream N > 0 is thread
 *   N's events, written by that thread alone without a lock, into blocks it
 *   reserves one at a time (so blocks of different streams interleave in
 *   the file, each stream's blocks in order).  A full block is SEALED: its
 *   checksum (capture_checksum of the payload) is written, then sealed = 1;
 *   the last block of each stream is usually not sealed, and is read as far
 *   as its records decode (with its window's).  A block whose magic is 0
 *   ends the capture (blocks are reserved with fallocate, so a killed
 *   target leaves zeros); a sealed block with a wrong checksum, an
 *   implausible header or a malformed record ends it too, keeping what came
 *   before in the file (reported as truncated).
 *
 *   ORDER: the reader returns stream 0 first, whole (so definitions precede
 *   every use), then the events of all threads in SEGMENTS: a thread writes
 *   MARK(seq) before its first event and whenever another thread wrote
 *   since its last one, where seq comes from one shared counter that also
 *   names the last writer (so a thread that sees itself named needs no
 *   mark).  Segments are read in seq order, each from its MARK to the
 *   thread's next MARK.  An event that happened before another in the
 *   program (a block freed by one thread and reused by another) is always
 *   in an earlier segment, or earlier in the same one.
 *
 *   Records come in two shapes, told apart by the low 3 bits of their first
 *   byte.  0: a TAGGED record, whose first byte is its tag (a multiple of 8,
 *   enum capture_tag), then unsigned LEB128 varints ("u") and zigzag varints
 *   ("s").  1 to 4: a FIXED event, the common case of the tracker's hot path
 *   (no branch to encode it, and fewer instructions to write than the
 *   varints), by the low 3 bits:
 *       1 FREE6   6 bytes: the address | 1, 48 bits
 *       2 ALLOC14 14 bytes: the address | 2 (48 bits), u32 size, u32 stack
 *       3 FREE4   4 bytes: the address's low 32 bits | 3
 *       4 ALLOC8  8 bytes: the address's low 32 bits | 4, then u32
 *                 (size - 1) | stack << 9: a size of 1 to 512 bytes (what
 *                 pymalloc serves itself) and a stack below 2^23
 *   FREE6 and ALLOC14 carry an address that is a multiple of 8 below 2^48
 *   (every malloc and pymalloc block on x86-64 and arm64), ALLOC14 a size
 *   below 4 GiB; any other ALLOC or FREE is written tagged.  FREE4 and
 *   ALLOC8 (version 6) take the address's upper 32 bits from the last FREE6
 *   or ALLOC14 of their stream (0 before the first): a thread's blocks are
 *   mostly in one 4 GiB range (pymalloc's arenas), so most of its events
 *   are the short ones, about 6 bytes an event against 10 with only the
 *   long ones.  Fixed events leave the tagged events' delta base alone.
 *   Ids count from 1 in order of definition per table, 0 means none.  The
 *   tagged records:
 *       META      key-len u, key, value-len u, value      (strings <= 4 KiB)
 *       STRING    len u, bytes                             → string id
 *       CODE      name u, file u, firstline s, table-len u, table bytes
 *                                                          → code id
 *       PYFRAME   code u, pos s      (bytecode position in the line table's
 *                                     unit; linetable.h)  → frame id
 *       NATFRAME  lib u (string), offset u (in the file), symbol u (string,
 *                 0 = resolve offline)                    → frame id
 *       STACK     parent u, frame u  (parent 0 = root)     → stack id
 *       THREAD    index u, os tid u  (stream `index` is this thread's)
 *       ALLOC     addr-delta s, size u, stack u   (addr-delta from the
 *                 previous TAGGED ALLOC/FREE/MMAP/MUNMAP address of the same
 *                 stream, from 0 at its start; the reader gives the address
 *                 itself)
 *       FREE      addr-delta s
 *       MMAP      addr-delta s, size u, stack u
 *       MUNMAP    addr-delta s, size u
 *       TIME      ns u (since the start), rss u (bytes, 0 = unknown)
 *       NOTE      len u, text
 *       END       file-size u  (the process exited normally; the file's
 *                 size then: a shorter file lost blocks)
 *       FINALIZING  (the interpreter began to shut down: the script, its
 *                 atexit handlers and non-daemon threads are done; what is
 *                 live here is what the program kept — `--leaks`)
 *       MARK      seq u  (a segment starts; never returned by the reader)
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
#define CAPTURE_VERSION 6u
#define CAPTURE_VERSION_OLDEST 3u        /* the oldest the reader reads */
#define CAPTURE_HEADER_SIZE 32u
#define CAPTURE_ALIGN 4096u              /* blocks start and end on this */
#define CAPTURE_BLOCK_MAGIC 0x4b4c4250u
#define CAPTURE_BLOCK_HEADER 32u         /* a window's header too */
#define CAPTURE_WINDOW_MAGIC 0x4e495750u
#define CAPTURE_CHUNK (64u << 10)        /* what a window holds and copies */
#define CAPTURE_WINDOW_HEAD 4096u        /* a window's header page; then a chunk */
#define CAPTURE_WINDOW_SIZE (CAPTURE_WINDOW_HEAD + CAPTURE_CHUNK)   /* stays in the cache */
#define CAPTURE_WINDOW_DATA (CAPTURE_CHUNK - CAPTURE_BLOCK_HEADER)  /* the longest record a window takes */
#define CAPTURE_WINDOWS_FREE 64u         /* windows kept for reuse when streams end */
#define CAPTURE_BLOCK_MIN 4096u          /* a stream's first block (threads may be many) */
#define CAPTURE_BLOCK_GROW (1u << 20)    /* blocks double up to this */
#define CAPTURE_BLOCK_MAX (4u << 20)     /* largest block the reader accepts */
#define CAPTURE_STR_MAX 4096u            /* longest STRING / META value / NOTE */
#define CAPTURE_TABLE_MAX (1u << 20)     /* longest line table in a CODE record */

enum capture_flags {
    CAPTURE_F_SAMPLED = 1u,
    CAPTURE_F_NATIVE = 2u,
    CAPTURE_F_PYTHON = 4u,               /* Python stacks are recorded */
};

/* A tagged record's first byte: a multiple of 8 (the low 3 bits tell fixed
 * events apart). */
enum capture_tag {
    CAPTURE_META = 1 << 3,
    CAPTURE_STRING = 2 << 3,
    CAPTURE_CODE = 3 << 3,
    CAPTURE_PYFRAME = 4 << 3,
    CAPTURE_NATFRAME = 5 << 3,
    CAPTURE_STACK = 6 << 3,
    CAPTURE_THREAD = 7 << 3,
    CAPTURE_ALLOC = 8 << 3,
    CAPTURE_FREE = 9 << 3,
    CAPTURE_MMAP = 10 << 3,
    CAPTURE_MUNMAP = 11 << 3,
    CAPTURE_TIME = 12 << 3,
    CAPTURE_NOTE = 13 << 3,
    CAPTURE_END = 14 << 3,
    CAPTURE_FINALIZING = 15 << 3,
    CAPTURE_MARK = 16 << 3,
};

/* Fixed events: the low 3 bits of the first byte, and their lengths. */
#define CAPTURE_FIXED_MASK 7u
#define CAPTURE_FIXED_FREE 1u
#define CAPTURE_FIXED_ALLOC 2u
#define CAPTURE_FIXED_FREE4 3u
#define CAPTURE_FIXED_ALLOC8 4u
#define CAPTURE_FIXED_FREE_LEN 6u
#define CAPTURE_FIXED_ALLOC_LEN 14u
#define CAPTURE_FIXED_FREE4_LEN 4u
#define CAPTURE_FIXED_ALLOC8_LEN 8u
#define CAPTURE_ALLOC8_SIZE_MAX 512u     /* ALLOC8's sizes: 1 to this */
#define CAPTURE_ALLOC8_STACK_SHIFT 9     /* its second word: (size - 1) | stack << this */
/* and its stacks: up to this */
#define CAPTURE_ALLOC8_STACK_MAX ((1u << (32 - CAPTURE_ALLOC8_STACK_SHIFT)) - 1)
/* Addresses a fixed event cannot carry: not a multiple of 8, or 2^48 and above. */
#define CAPTURE_FIXED_ADDR_BAD 0xffff000000000007ULL

/* Largest single record the writer accepts (a CODE record with its table). */
#define CAPTURE_RECORD_MAX (CAPTURE_TABLE_MAX + 64u)

/* ---- encoding helpers (shared by writer, reader and tests) ------------- */

/* The checksum of a sealed block's payload: two Fletcher-like sums of
 * 64-bit words, in lanes the compiler keeps in vector registers (a few
 * instructions per 32 bytes), mixed at the end. */
uint32_t capture_checksum(const uint8_t *p, size_t n);

/* The same checksum, fed in pieces of any length (the writer's, as it
 * copies window after window into a block). */
typedef uint64_t capture_v2 __attribute__((vector_size(16)));
struct capture_sum {
    capture_v2 a0, b0, a1, b1;
    uint8_t carry[32];         /* bytes short of a 32-byte step */
    uint32_t ncarry;
    uint64_t n;                /* bytes fed */
};
void capture_sum_init(struct capture_sum *c);
void capture_sum_add(struct capture_sum *c, const uint8_t *p, size_t n);
uint32_t capture_sum_final(const struct capture_sum *c);
/* Which code sums: 1 AVX2, 0 SSE2, -1 the CPU's best (the default, decided
 * at the first sum).  Both give the same sums; tests compare them. */
void capture_sum_select(int avx2);

/* A fixed event at out, which has room for 16 bytes (a free writes 8 and
 * keeps 6).  The caller checked (addr & CAPTURE_FIXED_ADDR_BAD) == 0, and
 * size < 2^32 for an allocation.  Returns its length. */
static inline size_t capture_put_fixed_free(uint8_t *out, uint64_t addr)
{
    uint64_t w = addr | CAPTURE_FIXED_FREE;
    __builtin_memcpy(out, &w, 8);
    return CAPTURE_FIXED_FREE_LEN;
}

static inline size_t capture_put_fixed_alloc(uint8_t *out, uint64_t addr, uint64_t size,
                                             uint32_t stack)
{
    uint64_t w = addr | CAPTURE_FIXED_ALLOC, v = size | (uint64_t)stack << 32;
    __builtin_memcpy(out, &w, 8);
    __builtin_memcpy(out + 6, &v, 8);
    return CAPTURE_FIXED_ALLOC_LEN;
}

/* The short forms, for an address whose upper 32 bits are those of the
 * stream's last FREE6 or ALLOC14 (the caller checked, and for ALLOC8 that
 * 1 <= size <= CAPTURE_ALLOC8_SIZE_MAX and stack <= CAPTURE_ALLOC8_STACK_MAX;
 * the address is a multiple of 8).  out has room for 8 bytes. */
static inline size_t capture_put_fixed_free4(uint8_t *out, uint64_t addr)
{
    uint32_t w = (uint32_t)addr | CAPTURE_FIXED_FREE4;
    __builtin_memcpy(out, &w, 4);
    return CAPTURE_FIXED_FREE4_LEN;
}

/* ALLOC8 with its second word made by the caller (the tracker keeps
 * stack << CAPTURE_ALLOC8_STACK_SHIFT ready and adds the size). */
static inline size_t capture_put_fixed_alloc8_word(uint8_t *out, uint64_t addr, uint32_t word)
{
    uint32_t first = (uint32_t)addr | CAPTURE_FIXED_ALLOC8;
    __builtin_memcpy(out, &first, 4);
    __builtin_memcpy(out + 4, &word, 4);
    return CAPTURE_FIXED_ALLOC8_LEN;
}

static inline size_t capture_put_fixed_alloc8(uint8_t *out, uint64_t addr, uint64_t size,
                                              uint32_t stack)
{
    return capture_put_fixed_alloc8_word(
        out, addr, (uint32_t)(size - 1) | stack << CAPTURE_ALLOC8_STACK_SHIFT);
}

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

/* One stream's current block, written through its window (a shared
 * mapping of a region of the file; see the format).  Only its owner writes
 * it; capture_stream_room/commit are the lock-free fast path, the rest (a
 * full window, a new block) must be serialised by the caller with every
 * other call on the same writer. */
struct capture_stream {
    uint8_t *win;              /* the window's mapping (header, then data), NULL before the first block */
    uint8_t *base;             /* base + used is where the next record goes (win data - from) */
    uint64_t block_off;        /* the current block's offset in the file, 0 = none */
    uint32_t size;             /* its size */
    uint32_t used;             /* payload bytes in it: copied, and in the window */
    uint32_t copied;           /* payload bytes copied into the block itself (the window's from) */
    uint32_t wend;             /* payload position where the window's chunk ends */
    uint32_t next_size;        /* size of the next block (doubles up to CAPTURE_BLOCK_GROW) */
    uint32_t id;               /* stream number: 0 = the process, N = thread N */
    struct capture_sum sum;    /* of the copied payload */
};

/* Never calls malloc or stdio (runs inside the target's allocator). */
struct capture_writer {
    int fd;
    uint64_t end;              /* bytes of the file reserved so far */
    int failed;                /* a write failed (disk full...): nothing more is written */
    int fail_errno;
    uint64_t bytes;            /* payload bytes in finished blocks */
    struct capture_stream main;    /* stream 0 */
    uint8_t *free_windows[CAPTURE_WINDOWS_FREE];   /* of streams that ended, for new ones */
    uint32_t nfree_windows;
    uint64_t copies;           /* writes into blocks (tests) */
    uint64_t chunk_copies;     /* of them, one whole chunk at a multiple of CAPTURE_CHUNK */
};

/* Create the file (truncating it) and write the header.  0, or -1 with errno. */
int capture_writer_open(struct capture_writer *w, const char *path, uint32_t flags);
/* Append one record to stream 0 (capture_stream_add on w->main). */
int capture_writer_add(struct capture_writer *w, const uint8_t *rec, size_t len);
/* Append one record to s, copying its window out or moving to a new block
 * when it does not fit.  0, or -1 once the writer has failed. */
int capture_stream_add(struct capture_writer *w, struct capture_stream *s, const uint8_t *rec,
                       size_t len);
/* Make room for len (<= CAPTURE_WINDOW_DATA) bytes where
 * capture_stream_room found none: pad the chunk and copy the window into
 * the block, or seal the block and start a new one. */
int capture_stream_next(struct capture_writer *w, struct capture_stream *s, size_t len);
/* Copy the window into the block, seal it, give the window back (a thread
 * that exits). */
void capture_stream_seal(struct capture_writer *w, struct capture_stream *s);
/* Unmap s's window without touching it (after fork: it is the parent's). */
void capture_stream_abandon(struct capture_stream *s);

/* The largest `used` at which len more bytes still fit in s's window
 * (whose chunk ends inside the block; negative: none, take the slow path). */
static inline int64_t capture_stream_limit(const struct capture_stream *s, size_t len)
{
    if (s->win == NULL)
        return -1;
    return (int64_t)s->wend - (int64_t)len;
}

/* Room for len bytes in s's window: where to write them, or NULL (take the
 * slow path: capture_stream_next). */
static inline uint8_t *capture_stream_room(struct capture_stream *s, size_t len)
{
    if ((int64_t)s->used > capture_stream_limit(s, len))
        return NULL;
    return s->base + s->used;
}

/* The len bytes written at capture_stream_room are a record: publish it
 * (the window's upto last, so a killed target leaves whole records). */
static inline void capture_stream_commit(struct capture_stream *s, size_t len)
{
    s->used += (uint32_t)len;
    __atomic_store_n((uint32_t *)(void *)(s->win + 4), s->used, __ATOMIC_RELEASE);
}

/* Seal stream 0 and the calling thread's s (may be NULL); close the fd.
 * Other streams' blocks and windows stay as they are (still readable). */
void capture_writer_close(struct capture_writer *w, struct capture_stream *s);
/* After fork, in the child: drop stream 0's window and the free windows
 * without touching the file (it still belongs to the parent), and close
 * our copy of the fd. */
void capture_writer_abandon(struct capture_writer *w);

/* ---- reader ------------------------------------------------------------- */

/* One decoded record.  Pointers point into the mapped capture and stay valid
 * until capture_close. */
struct capture_record {
    enum capture_tag tag;
    uint64_t a, b, c;          /* the record's integer fields, in order */
    int64_t s;                 /* the signed field (pos, firstline, addr delta) */
    uint64_t addr;             /* ALLOC/FREE/MMAP/MUNMAP: the address */
    int fixed;                 /* a fixed event (the address is in it, not a delta):
                                  1 long, 2 short (FREE4, ALLOC8: decode gives the
                                  low 32 bits, capture_next the whole address) */
    uint32_t stream;           /* the stream it was read from */
    const uint8_t *data;       /* META key / STRING / NOTE bytes / CODE table */
    size_t len;
    const uint8_t *data2;      /* META value */
    size_t len2;
};

struct capture_block;
struct capture_segment;

struct capture_file {
    const uint8_t *base;
    size_t size;
    uint32_t align, flags, version;
    uint32_t stopped_errno;    /* the header's `stopped` */
    /* the index, made by capture_open */
    struct capture_block *blocks;
    uint32_t nblocks;
    struct capture_segment *segments;
    uint32_t nsegments;
    uint64_t *last_addr;       /* per stream (dense index) */
    uint64_t *high;            /* per stream: the upper 32 bits of short events' addresses */
    uint32_t nstreams;
    uint64_t total_records;    /* records in the index (MARKs excluded) */
    /* cursor */
    int phase;                 /* 0: stream 0's blocks; 1: the segments */
    uint32_t block;            /* current block (index) */
    uint32_t segment;          /* current segment */
    const uint8_t *pos, *end;  /* remaining payload of the current block */
    uint32_t stream_index;     /* dense index of the stream being read */
    int done;
    int truncated;             /* the capture ended without an END record or mid-way */
    char why[160];             /* why reading stopped early */
    int has_end;
    uint64_t records, payload_bytes;
    int mapped;                /* base is our mmap of the file */
};

/* Open (mmap) a capture.  PM_ENOTFOUND / PM_EPERM for the file, PM_EFORMAT
 * when it is not a pyrometer memory capture (or an unknown version),
 * PM_ENOMEM. */
int capture_open(const char *path, struct capture_file *f, struct pm_error *err);

/* Room in *arr for item `need` (*cap items of elem bytes, doubled until it
 * fits, the new ones zeroed): 0, or -1 with *arr and *cap as they were.
 * The reader's and replay's arrays. */
int capture_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem);

/* Parse a capture already in memory (tests, fuzzing); buf is borrowed. */
int capture_open_buffer(const uint8_t *buf, size_t len, struct capture_file *f,
                        struct pm_error *err);
/* Start again from the first record. */
void capture_rewind(struct capture_file *f);
/* The next record: 1 and *r filled, 0 at the end (f->truncated and f->why
 * say whether it ended early). */
int capture_next(struct capture_file *f, struct capture_record *r);
/* How far the cursor is, as a fraction of the records (progress display). */
double capture_progress(const struct capture_file *f);
void capture_close(struct capture_file *f);

#endif
