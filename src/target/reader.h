/*
 * reader.h — reading memory of a target.
 *
 * Owns: the reader abstraction and its implementations: a remote process
 * (process_vm_readv, with a small page cache that lives for one sample) and
 * a local buffer (tests, fuzzing, core files later).  Every read is checked;
 * a failed read is an error, never a partially filled buffer.  Never
 * interprets what it reads, never prints.
 */
#ifndef PYROMETER_READER_H
#define PYROMETER_READER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"

struct reader;

/* One item of a batched read: len bytes at addr into buf.  Items close
 * together are read as one range (see reader_readv); READER_IOV_LATER keeps
 * an item out of the range before it, so that it is copied after it (a
 * value read again to check it did not change meanwhile). */
struct reader_iov {
    uint64_t addr;
    void *buf;
    size_t len;
    unsigned flags;
};
#define READER_IOV_LATER 1u

/* Most items a single reader_readv accepts. */
#define READER_MAX_IOV 256u

struct reader_ops {
    /* Read exactly len bytes at addr into buf, or fail (PM_EREAD for an
     * unmapped address, PM_EGONE if the process is gone, PM_EPERM). */
    int (*read)(struct reader *r, uint64_t addr, void *buf, size_t len,
                struct pm_error *err);
    /* Same, bypassing any cache (NULL: read is already uncached). */
    int (*read_fresh)(struct reader *r, uint64_t addr, void *buf, size_t len,
                      struct pm_error *err);
    void (*close)(struct reader *r);
    /* Several fresh reads in one go (NULL: done item by item with
     * read_fresh, or read). */
    int (*readv)(struct reader *r, const struct reader_iov *iov, size_t n,
                 struct pm_error *err);
};

struct reader_stats {
    uint64_t reads;      /* reader_read calls */
    uint64_t syscalls;   /* process_vm_readv calls made */
    uint64_t ranges;     /* remote ranges those calls read (batched items merge) */
    uint64_t cache_hits;
};

struct reader {
    const struct reader_ops *ops;
    struct reader_stats stats;
};

/* Bounds the size of any single read a caller may ask for (16 MiB). */
#define READER_MAX_READ (16u << 20)

/* A reader of process `pid` (process_vm_readv).  Fails with PM_ENOTFOUND. */
struct reader *reader_remote_new(pid_t pid, struct pm_error *err);

/* A reader over a local buffer that pretends to live at `base`.  The buffer
 * is borrowed, not copied. */
struct reader *reader_buffer_new(const void *buf, size_t len, uint64_t base);

int reader_read(struct reader *r, uint64_t addr, void *buf, size_t len,
                struct pm_error *err);
/* Like reader_read, but never served from (nor stored in) the page cache:
 * for re-reading a value to check it has not changed within a sample. */
int reader_read_fresh(struct reader *r, uint64_t addr, void *buf, size_t len,
                      struct pm_error *err);
/* Several reads, each as by reader_read_fresh (never from the page cache),
 * done in order in as few system calls as possible (one process_vm_readv for
 * a remote reader).  All or nothing: fails if any item cannot be read whole
 * (the error names the first such item); buffers may then be partly filled.
 * At most READER_MAX_IOV items. */
int reader_readv(struct reader *r, const struct reader_iov *iov, size_t n,
                 struct pm_error *err);
/* Typed helpers. */
int reader_u64(struct reader *r, uint64_t addr, uint64_t *out, struct pm_error *err);
int reader_u32(struct reader *r, uint64_t addr, uint32_t *out, struct pm_error *err);
int reader_i32(struct reader *r, uint64_t addr, int32_t *out, struct pm_error *err);
/* Read a NUL-terminated C string of at most cap-1 bytes (truncated, always
 * terminated).  Fails only if the first byte cannot be read. */
int reader_cstr(struct reader *r, uint64_t addr, char *out, size_t cap,
                struct pm_error *err);

/* Forget cached pages: call at the start of each sample so a sample never
 * mixes memory read in different samples. */
void reader_new_epoch(struct reader *r);

void reader_close(struct reader *r);

#endif
