/*
 * tracker.c — the allocation tracker: build/libpyrometer-mem.so, loaded into
 * the program by `pyrometer mem run` through LD_PRELOAD.
 *
 * Owns: interposing malloc, calloc, realloc, free, posix_memalign,
 * aligned_alloc, memalign, valloc, pvalloc, mmap, mmap64 and munmap;
 * attributing each allocation to the Python stack of the allocating thread
 * (and, with --native or in a program without Python, to its C frames);
 * interning frames and stacks so each is written once; and streaming the
 * events into the capture (capture.h) named by PYROMETER_MEM_OUT.  Must never
 * print (the program owns stdout/stderr), never call the program's malloc for
 * itself (a thread-local guard makes the tracker's own allocations, and those
 * of dlsym/dladdr/libunwind, untracked), never take a lock the program could
 * hold.
 *
 * Environment (set by `pyrometer mem run`):
 *   PYROMETER_MEM_OUT     capture path; children not exec'd by the first
 *                         process write PATH.PID
 *   PYROMETER_MEM_PARENT  pid of pyrometer: the process whose parent it is
 *                         (the launched program, also after its execs) owns
 *                         PATH itself
 *   PYROMETER_MEM_SAMPLE  mean bytes between samples (0 or unset: every
 *                         allocation)
 *   PYROMETER_MEM_NATIVE  1: record C frames too
 *   PYROMETER_MEM_TEST_MAX_THREADS  (tests only) fewer thread states than
 *                         MAX_SLOTS, so that the note for a thread left
 *                         untracked can be tested
 *
 * Python allocators: the MEM and OBJ domains (and the arena allocator) are
 * wrapped with PyMem_SetAllocator from this library's constructor (3.6+),
 * before main: no thread runs and no allocator mutex can be held (3.12
 * creates its lock in Py_Initialize and PyMem_SetAllocator skips it while it
 * is NULL; 3.13's is a static PyMutex), and every object and pymalloc arena
 * of the interpreter is made through the hooks.  The wrapped allocator runs
 * with the guard set, so pymalloc's own mallocs (blocks > 512 bytes) and its
 * arenas are never counted twice; except over pymalloc itself, where full
 * mode's hooks (FAST_HOOKS) call it unguarded: the allocation hook writes
 * events only for the requests pymalloc serves itself (a larger one is the
 * interposed malloc's event), and a large block's free is written twice,
 * the second for an address no longer live, which the report ignores.  Sampled
 * mode's hooks over pymalloc (DIRECT_HOOKS) count down before the call and
 * end in a jump to pymalloc.  Where
 * the interpreter sets its allocators up again after us (3.6/3.7's Py_Main
 * always, PYTHONMALLOC, -X dev), check_python_hooks() installs them again at
 * the first allocation made by Python code (a thread state with a frame:
 * outside CPython's allocator code, the only place 3.12+ hold the
 * allocators' mutex, which never allocates); arenas mapped in between are
 * not counted (the arena hook), objects made in between are not seen.
 * PYROMETER_MEM_PYALLOC=malloc uses PYTHONMALLOC=malloc instead, which
 * measures slower: bench/mem_workload.py (3.11, 30 rounds, CPU time, medians
 * of 7 interleaved runs) plain 0.25 s, PYTHONMALLOC=malloc alone 1.32x,
 * tracked through malloc 2.26x, tracked through the hooks 2.06x (at the time
 * of that measurement).  2.7 has neither: its small objects appear as
 * pymalloc arenas (256 KiB mmaps) attributed to the stack that needed a new
 * arena.
 *
 * Events: each thread writes its own stream (capture.h) straight into its
 * window, a shared mapping of the capture file that it reuses and that
 * holds one 64 KiB chunk of the thread's block at a time, without a lock;
 * a lock is taken only to copy a full window into the thread's block
 * (pwrite) or start a block (1 MiB once a thread is busy), to intern a new
 * stack and for the process's stream 0 (definitions).  Order across
 * threads: one shared word holds a segment counter and the last writer
 * (its state's slot); a thread that is not the last writer takes the next
 * number (CAS) and writes MARK(n) first, so the reader can put segments
 * back in order, and any event that happened before another in the
 * program (a free, then the reuse of the block by another thread) is in an
 * earlier segment.  The fast paths do not look at that word: the thread
 * that takes it sets the last writer's t->limit to -1 (stop_writer), which
 * sends that one to its slow path and a MARK of its own.  Frees are
 * written before the block is released and allocations after.  A free is
 * the address alone and an allocation adds its size and stack id, as
 * fixed-width records (capture.h): 4 and 8 bytes (FREE4, ALLOC8: the
 * address's low half, for a block in the same 4 GiB as the stream's last
 * long event; ALLOC8 for 1 to 512 bytes, which is every block pymalloc
 * serves), else 6 and 14, one or two stores and a compare to encode them;
 * an address that is not a multiple of 8 or a size of 4 GiB and more
 * takes the tagged, varint form.  The clock is looked at every TIME_STRIDE
 * bytes of a stream, by the same compare that finds a block full
 * (t->limit).
 *
 * Stacks: a thread's stack is keyed by its whole chain of (code object,
 * position) pairs, hashed (64 bits, two or four instructions a frame: see
 * chain_hash for the collision risk; on 3.11+ a frame's instruction pointer
 * alone, which points into its code object) by walking its frames in-process with
 * the per-version layouts of python/layout.h (3.13: _Py_DebugOffsets in
 * _PyRuntime): on 3.7-3.13 a straight loop with the offsets in registers
 * (walk_frames), elsewhere chain_hash; the key is looked up in the thread's
 * own cache (128 sets of two entries, no lock).  Keys do not depend
 * on where frames are: 3.11+ frames live on a per-thread stack, so two call
 * chains that differ only below their top frames have those at the same
 * addresses, and a cache keyed on the top frames would mix them (the e2e
 * test `same_frames_different_callers` fails that way).  A code object is
 * its address and g_code_gen, bumped whenever a code object is deallocated
 * (PyCode_Type's tp_dealloc, wrapped by the constructor: every version,
 * every mode), so a new code object at a freed one's address gets new
 * keys; only where that wrap could not be made do keys read each code
 * object's fingerprint (line table, name, file) too.  The thread state is the GIL
 * holder when it is ours (Python's allocators run with the GIL), else
 * PyGILState_GetThisThreadState().  A key the thread has not seen goes to
 * the shared table (lock), and a stack never seen is walked again in full
 * and interned: its frames and a trie of STACK records (parent, frame), so
 * each stack prefix is written once.  Code objects are decoded once (name,
 * file, first line, line table) through process_vm_readv on ourselves, so a
 * bad pointer is an error and never a crash; line numbers are computed by
 * the report.
 *
 * Sampled mode (--sample BYTES) installs its own hooks: an allocation is a
 * thread-local countdown subtraction (Poisson by bytes); only when it runs
 * out is the stack walked and the event written, and the block noted in a
 * table (lock) and in a 4 KiB table of counters by address hash that stays
 * in the cache: a free of a block never sampled is that one load.  Over
 * pymalloc the domains' free is not wrapped at all ("direct" hooks, see
 * sampled_small_hit): a sampled small block is moved to the C library's
 * malloc, so that its free, through pymalloc, reaches the interposed free().
 *
 * Measured (bench/mem_bench.py: 4 M allocations and 4 M frees of small
 * objects in 30 rounds, Debian's python3.11, loop CPU time, medians of
 * interleaved runs on a shared 2-core machine; callgrind instructions per
 * round, `python3 bench/mem_bench.py --runs 1 --rounds 6 --instructions`,
 * are the steady figure; 273 850 events a round):
 *                      first (single    format 2     format 3       now (format 4:
 *                      stream, lock)    (varints)    (fixed events) windows)
 *   full, CPU time     3.06x            1.90x        1.66-1.87x     1.40-1.54x
 *   full, instructions 3.20x (+489)     1.71x (+159) 1.46x (+104)   1.48x (+106)
 *   sampled 512K, CPU  1.46x            1.10x        1.09-1.14x     1.08x
 *   sampled, instr.    1.34x (+76)      1.06x (+13)  1.05x (+12)    1.05x (+12)
 *   scalene --memory   2.5-3.0x
 * Peak held by the workload's main(), against its size by construction:
 * full +0.08 %, sampled within 5 %.  Capture: 10.2 bytes per event (5.3
 * with varint events; 6.1 with format 6's short events).  Format 3
 * against 4: 1.87x and 1.40x, then 1.87x and 1.54x, in two sets of 9
 * interleaved runs (LD_PRELOAD, 30 rounds, medians): format 3 wrote
 * each block through its own fresh mapping, and the kernel's page
 * faults cost as much as the tracker's code (system time of the whole
 * run +0.126 s over the plain run's, now +0.042 s; user time +0.12 s
 * either way).  Sampled mode's cost is the hook's: a library whose hook
 * only calls pymalloc measures the same on Debian's python3.11 (PGO
 * inlines pymalloc into PyObject_Malloc while no hook is set) and 1.02x
 * on pyenv's 3.11.7.  Other interpreters (pyenv's builds, straight
 * walks, see g_walk): full 1.30-1.34x CPU (paired medians) and +101-112
 * instructions per event on 3.10-3.13, sampled 1.02-1.04x (+7-9).
 * What the +159 became: fixed-width events, one 64-bit stack key, the
 * vector checksum and the guard held from the allocation to the event
 * written, together +159 -> +110 (callgrind per source line before: the
 * varints' zigzag and branches ~30 per event, the second hash ~7, the
 * checksum 6, now 3 over twice the bytes; the same build writing every
 * event through the tagged writer measures +154); then the 3.11 walk with
 * constant offsets, the clock check folded into the room check, the owner
 * compared as one word and one TLS block, +110 -> +104; then 3.11+ frames
 * hashed by their instruction pointer alone, two frames a loop turn, and
 * a frameless free hook over pymalloc (now FAST_HOOKS' free): +106 -> +96 on
 * Debian's 3.11 (1.48x -> 1.43x; CPU 1.49x, paired 1.47x, in a quiet set),
 * +101-112 -> +90-99 on pyenv's 3.11-3.13, +104-106 -> +99-100 on
 * 3.8-3.10; then the allocation's event as a tail call with no stack
 * frame (alloc_event_311, -2.5), the block checksum's sums kept in
 * registers and in AVX2 where the CPU has it (with the 3.11+ hash's
 * rotate dropped, -5), four frames a loop turn (-1.7) and reallocations
 * through the same fast cases (-0.2): +96.8 -> +87.5 on Debian's 3.11
 * (1.434x -> 1.393x), +82-98 on pyenv's 3.8-3.13 (1.286-1.316x); then
 * the thread's state and the guard in one word (gate_state: one load, one
 * signed test), the fast paths no longer looking at g_state (stopping
 * sets the finalising watch they read anyway), code-object deaths seen in
 * the type's deallocator instead of a type check in every free, 3.11's
 * malloc hook jumping straight to alloc_event_311, and the depth mixed
 * into the key with one xor: +87.5 -> +79.0 on Debian's 3.11 (1.355x),
 * +73-91 on pyenv's 3.8-3.13 (1.267-1.282x); then full mode's hooks over
 * pymalloc per domain with pymalloc's context (the call and the jump
 * through g_orig, two loads fewer) and an allocation hook without the
 * guard (the interposed malloc writes pymalloc's large requests), and
 * sampled mode's countdown before a jump to pymalloc: full +79.0 -> +74.1
 * on Debian's 3.11 (1.332x), +68-86 on pyenv's (1.252-1.263x); sampled
 * +12.0 -> +10 (1.044-1.047x, the sampled allocations vary from run to
 * run), +4.6-6.9 on pyenv's (1.015-1.020x); then no check of the
 * address and size of a block pymalloc served itself, and a free's low
 * pointer bits cleared instead of tested: full about -2 (+72.7 -> +70.7 on
 * Debian's 3.11 against a plain run of the same set, 1.314x; +66-82 and
 * 1.234-1.252x on pyenv's 3.8-3.13); then (format 6) 4-byte frees and
 * 8-byte small allocations (FREE4, ALLOC8: a compare with the stream's
 * upper address half, +4 a free and +3 an allocation, the stack id kept
 * ready for ALLOC8 in the cache entry), paid for by the owner test leaving
 * the fast paths (stop_writer, -3 each): the same instructions (+72.0 and
 * +72.1 per event on Debian's 3.11 in one set, PYTHONHASHSEED=0; +1 on
 * pyenv's builds), a capture 40 % smaller (the workload's 30 rounds:
 * 84.4 MB -> 50.8 MB, 6.1 bytes an event), a third less extra system time
 * (60 rounds, medians of 21 interleaved runs: 0.124 -> 0.103 s, plain
 * 0.060) and loop CPU time 1.54x -> 1.48x (median), 1.45x -> 1.41x
 * (fastest runs); through `mem run`, 30 rounds, two sets of 21: 1.35x
 * and 1.36x -> 1.27x twice (paired 1.37x, 1.38x -> 1.30x twice).
 * Left, per allocation and free on Debian's 3.11 (callgrind per source
 * line, 4 rounds minus 2; by function: bench/MEM.md): about 58 in the
 * library's fast paths, per event: the room checks ~3, the walk ~17 (2
 * for the hash and ~3 loads and tests a frame, about 5 frames here),
 * the gate, watch and GIL-holder checks ~9, the key and the cache probe
 * ~5, the stores and the format ~10, the hooks' own ~6; and ~14 in the
 * interpreter: the hooks' indirect calls and pymalloc called out of
 * line, which PGO inlines while no hook is set.  The walk is per frame:
 * 40 frames deeper (bench/mem_bench.py --depth 40) full tracking is
 * 1.62-1.82x on pyenv's builds (was 1.78-1.92x two steps before) and
 * 1.84x on Debian's 3.11 (was 2.10x).  A no-op C profile function
 * (PyEval_SetProfile), the price of keeping a stack through call hooks
 * instead, alone costs 1.73x on this workload on Debian's 3.11.
 * fork: the child drops the parent's streams, tables and capture, and
 * starts PATH.CHILDPID.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "../python/debug_offsets.h"
#include "../python/layout.h"
#include "../python/objects.h"
#include "../target/reader.h"
#include "capture.h"

#define EXPORT __attribute__((visibility("default")))
#define HOT static inline __attribute__((always_inline))
#define TLS __thread __attribute__((tls_model("initial-exec")))

#define MAX_DEPTH 256u            /* Python frames kept per stack (innermost) */
_Static_assert(MAX_DEPTH % 4 == 0, "walk_frames takes four frames a turn");
#define MAX_NATIVE 64u            /* C frames kept per stack */
#define TIME_STRIDE 16384u        /* stream bytes between clock checks */
#define TIME_PERIOD_NS 10000000u  /* at most one TIME record per 10 ms */
#define FRAME_OWNED_BY_CSTACK 3

/* glibc's own allocator entry points: no dlsym needed (dlsym allocates). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

/* ---- state ---------------------------------------------------------------- */

enum { ST_OFF = 0, ST_ON, ST_DONE };

#define STACK_MEMO 256u                 /* per-thread stack cache entries (even) */
#define EVENT_MAX 48u                   /* longest event record */
#define EVENT_ROOM (EVENT_MAX + 48u)    /* room for a MARK, a TIME and an event */
#define OWNER_BITS 24                   /* g_owner: the writer's slot bits */
#define MAX_SLOTS (1u << 20)            /* thread states alive or spare at once */
#define OWNER_MASK ((1ull << OWNER_BITS) - 1)

struct stack_memo {
    uint64_t h;                         /* the chain's hash (see chain_hash) */
    uint32_t id;                        /* its stack id */
    uint32_t word;                      /* (id << CAPTURE_ALLOC8_STACK_SHIFT) - 1: ALLOC8's
                                           second word less the size */
};

/* One thread's tracking state: its stream, its last address (events are
 * delta-encoded per stream) and its stack cache.  Made at the thread's
 * first event, kept for the next new thread when it exits (a pthread key
 * destructor), never unmapped while tracking runs, so that another thread
 * may always write its `limit` (see event_room_slow). */
struct thread_state {
    struct capture_stream s;
    uint32_t index;                     /* stream number, from 1 */
    uint32_t slot;                      /* g_slots[slot] is this state, for good */
    int64_t limit;                      /* the fast path writes while s.used <= limit
                                           (another thread may set it to -1) */
    uint64_t owner;                     /* g_owner as this thread last set it; ~0: none yet */
    uint32_t time_at;                   /* s.used at which to check the clock */
    uint64_t last_addr;                 /* the last tagged event's address */
    uint64_t high;                      /* the last long fixed event's address >> 32 */
    uint32_t rounds;                    /* destructor rounds seen */
    uint64_t self;                      /* pthread_self() */
    struct thread_state *next;          /* g_threads */
    struct stack_memo memo[STACK_MEMO];
};

static volatile int g_state;            /* ST_* */
static int g_lock;                      /* stream 0, the tables, new blocks */
static struct capture_writer g_w;
static char g_path[4096];
static uint64_t g_sample_bytes;         /* 0: every allocation */
static int g_native;
static uint64_t g_t0_ns, g_last_time_ns;
static uint32_t g_next_thread = 1;
static int g_saw_finalizing;
static struct thread_state *g_threads;  /* every thread's state (lock) */
static struct thread_state *g_spare;    /* states of threads gone, for new ones (lock) */
static struct thread_state **g_slots;   /* every state made, by slot (MAX_SLOTS, lazily) */
static uint32_t g_nslots;
static uint32_t g_max_slots = MAX_SLOTS;   /* PYROMETER_MEM_TEST_MAX_THREADS lowers it (tests) */
static int g_noted_untracked;           /* the capture says a thread went untracked (lock) */
static uint64_t g_owner;                /* (segment << OWNER_BITS) | the last writer's slot */
#define CODE_GEN_SEED 0x243f6a8885a308d3ULL
static uint64_t g_code_gen = CODE_GEN_SEED;  /* bumped when a code object is freed; a chain's hash starts from it */
static int g_code_frees_seen;           /* code objects' frees are seen (wrap_code_dealloc) */
static pthread_key_t g_key;
static int g_key_ok;
/* The finalising watch, which every event looks at (two loads):
 * *g_finalizing while the interpreter's shutdown is to be noted, else a
 * word that says "call check_finalizing" (2.7; and once tracking stopped:
 * the fast paths, which do not look at g_state, take the slow ones, which
 * do) or "nothing to watch" (no Python, or noted). */
static const uint64_t g_one = 1, g_zero = 0;
static const volatile uint64_t *g_fin_watch = &g_zero;

/* The thread's own words, in one TLS block (one offset to load for all). */
struct tracker_tls {
    uint64_t gate;                      /* this thread's state (NULL = not yet), | GATE_BUSY */
    int64_t countdown;                  /* sampling: bytes until the next sample */
    uint64_t rng;
};
static TLS struct tracker_tls t_tls;
#define t_countdown (t_tls.countdown)
#define t_rng (t_tls.rng)

/* The gate holds the thread's state and the guard in one word: the
 * state's address (user space: bit 63 clear) and bit 63 while the thread
 * is inside the tracker ("busy": its own allocations, and those made
 * under it, are not tracked).  So one load and one signed test say "this
 * thread has a state and is not busy" (gate_state), the fast paths'
 * question. */
#define GATE_BUSY (1ull << 63)

HOT int busy_get(void)
{
    return (t_tls.gate & GATE_BUSY) != 0;
}

HOT void busy_set(int on)
{
    t_tls.gate = on ? t_tls.gate | GATE_BUSY : t_tls.gate & ~GATE_BUSY;
}

HOT struct thread_state *st_get(void)
{
    return (struct thread_state *)(uintptr_t)(t_tls.gate & ~GATE_BUSY);
}

HOT void st_set(struct thread_state *t)
{
    t_tls.gate = (t_tls.gate & GATE_BUSY) | (uint64_t)(uintptr_t)t;
}

/* This thread's state when it has one and is not busy, else NULL. */
HOT struct thread_state *gate_state(void)
{
    int64_t g = (int64_t)t_tls.gate;
    return __builtin_expect(g > 0, 1) ? (struct thread_state *)(uintptr_t)g : NULL;
}

/* Python, found at load time */
static int g_py;                        /* Python stacks available */
static struct py_layout g_layout;
static void *(*g_this_tstate)(void);
static uint64_t g_code_type, g_runtime;
static uint64_t g_tstate_current;       /* 2.7: &_PyThreadState_Current */
static uint64_t g_gil_holder;           /* 3.7+: where the GIL's last holder is, 0 = unknown */
static struct py_objects g_objects;
static struct reader g_self_reader;

/* ---- small helpers -------------------------------------------------------- */

static void lock(void)
{
    int spins = 0;
    while (__atomic_exchange_n(&g_lock, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&g_lock, __ATOMIC_RELAXED)) {
            if (++spins > 200) {
                sched_yield();
                spins = 0;
            } else {
                __builtin_ia32_pause();
            }
        }
    }
}

static void unlock(void)
{
    __atomic_store_n(&g_lock, 0, __ATOMIC_RELEASE);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *raw_map(size_t len)
{
    long r = syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    return r < 0 && r > -4096 ? NULL : (void *)r;
}

static void raw_unmap(void *p, size_t len)
{
    if (p)
        syscall(SYS_munmap, p, len);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Resident set size from /proc/self/statm, without allocating. */
static uint64_t read_rss(void)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[128];
    long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = buf;
    while (*p && *p != ' ')
        p++;
    uint64_t pages = 0;
    while (*p == ' ')
        p++;
    while (*p >= '0' && *p <= '9')
        pages = pages * 10 + (uint64_t)(*p++ - '0');
    return pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- hash tables (anonymous mappings, never malloc) ------------------------ */

struct slot {
    uint64_t k1, k2, k3;
    uint32_t value;                     /* 0 = empty */
    uint32_t pad;
};

struct table {
    struct slot *slots;
    size_t cap, used;
};

static uint64_t slot_hash(uint64_t k1, uint64_t k2, uint64_t k3)
{
    return mix64(k1 ^ (k2 * 0x9e3779b97f4a7c15ULL) ^ (k3 * 0xc2b2ae3d27d4eb4fULL));
}

static uint32_t table_get(const struct table *t, uint64_t k1, uint64_t k2, uint64_t k3)
{
    if (t->cap == 0)
        return 0;
    size_t i = slot_hash(k1, k2, k3) & (t->cap - 1);
    for (;;) {
        const struct slot *s = &t->slots[i];
        if (s->value == 0)
            return 0;
        if (s->k1 == k1 && s->k2 == k2 && s->k3 == k3)
            return s->value;
        i = (i + 1) & (t->cap - 1);
    }
}

static void table_insert_raw(struct slot *slots, size_t cap, const struct slot *e)
{
    size_t i = slot_hash(e->k1, e->k2, e->k3) & (cap - 1);
    while (slots[i].value != 0)
        i = (i + 1) & (cap - 1);
    slots[i] = *e;
}

static int table_put(struct table *t, uint64_t k1, uint64_t k2, uint64_t k3, uint32_t value)
{
    if ((t->used + 1) * 4 > t->cap * 3) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        struct slot *grown = raw_map(cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i].value)
                table_insert_raw(grown, cap, &t->slots[i]);
        raw_unmap(t->slots, t->cap * sizeof *t->slots);
        t->slots = grown;
        t->cap = cap;
    }
    struct slot e = {k1, k2, k3, value, 0};
    table_insert_raw(t->slots, t->cap, &e);
    t->used++;
    return 0;
}

static void table_reset(struct table *t)
{
    raw_unmap(t->slots, t->cap * sizeof *t->slots);
    memset(t, 0, sizeof *t);
}

static struct table g_strings;          /* (hash, len) -> string id */
static struct table g_codes;            /* (code, linetable, 0) -> code id */
static struct table g_frames;           /* (code id, pos, kind) -> frame id */
static struct table g_nodes;            /* (parent, frame, 0) -> stack id */
static struct table g_chains;           /* (hash, depth, 0) -> stack id */
static struct table g_sampled;          /* sampled mode: live sampled blocks (addr) */
static uint32_t g_nstrings, g_ncodes, g_nframes, g_nstacks;

/* ---- writing: stream 0 (lock held) ---------------------------------------- */

/* Tracking stops for good (disk full, exit; lock held): what is written
 * stays, nothing more is. */
static void stop_tracking(void)
{
    g_state = ST_DONE;
    __atomic_store_n(&g_fin_watch, &g_one, __ATOMIC_RELEASE);
}

static void emit(const uint8_t *rec, size_t len)
{
    if (capture_writer_add(&g_w, rec, len) != 0 && g_state == ST_ON)
        stop_tracking();   /* disk full or the like */
}

static void emit_bytes_record(uint8_t tag, const void *s, size_t n)
{
    uint8_t rec[16 + CAPTURE_STR_MAX];
    if (n > CAPTURE_STR_MAX)
        n = CAPTURE_STR_MAX;
    size_t k = 0;
    rec[k++] = tag;
    k += capture_put_u(rec + k, n);
    memcpy(rec + k, s, n);
    emit(rec, k + n);
}

static void emit_meta(const char *key, const char *value)
{
    uint8_t rec[32 + 2 * CAPTURE_STR_MAX];
    size_t kl = strnlen(key, CAPTURE_STR_MAX), vl = strnlen(value, CAPTURE_STR_MAX);
    size_t k = 0;
    rec[k++] = CAPTURE_META;
    k += capture_put_u(rec + k, kl);
    memcpy(rec + k, key, kl);
    k += kl;
    k += capture_put_u(rec + k, vl);
    memcpy(rec + k, value, vl);
    emit(rec, k + vl);
}

static void emit_note(const char *text)
{
    emit_bytes_record(CAPTURE_NOTE, text, strlen(text));
}

/* Intern a string (called with the lock held); 0 for "". */
static uint32_t intern_string(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (n > CAPTURE_STR_MAX)
        n = CAPTURE_STR_MAX;
    uint64_t h1 = 14695981039346656037ULL, h2 = 0;
    for (size_t i = 0; i < n; i++) {
        h1 = (h1 ^ (uint8_t)s[i]) * 1099511628211ULL;
        h2 = (h2 * 31) + (uint8_t)s[i];
    }
    uint32_t id = table_get(&g_strings, h1, h2, n);
    if (id)
        return id;
    emit_bytes_record(CAPTURE_STRING, s, n);
    id = ++g_nstrings;
    table_put(&g_strings, h1, h2, n, id);
    return id;
}

/* ---- writing: a thread's own stream (no lock) ----------------------------- */

static void thread_exit(void *arg);

/* A state for a new thread (lock held): a spare one, or a new one in the
 * next slot; NULL when memory (or slots) ran out. */
static struct thread_state *state_take(void)
{
    struct thread_state *t = g_spare;
    if (t != NULL) {
        g_spare = t->next;
        uint32_t slot = t->slot;
        memset(t, 0, sizeof *t);   /* another thread may set `limit` meanwhile: see below */
        t->slot = slot;
        return t;
    }
    if (g_slots == NULL)
        g_slots = raw_map(MAX_SLOTS * sizeof *g_slots);   /* pages touched as used */
    if (g_slots == NULL || g_nslots >= g_max_slots || (t = raw_map(sizeof *t)) == NULL)
        return NULL;
    t->slot = g_nslots;
    __atomic_store_n(&g_slots[g_nslots++], t, __ATOMIC_RELEASE);
    return t;
}

/* Make this thread's state (the guard set by the caller); NULL when tracking
 * has stopped or memory is short. */
static __attribute__((noinline)) struct thread_state *thread_new(void)
{
    lock();
    struct thread_state *t = g_state == ST_ON ? state_take() : NULL;
    if (t == NULL) {
        if (g_state == ST_ON && !g_noted_untracked) {
            /* said once in the capture (the report prints it), not silently */
            g_noted_untracked = 1;
            char text[128];
            if (g_nslots >= g_max_slots)
                snprintf(text, sizeof text, "a thread's allocations were not tracked: over %u "
                         "threads at once", g_max_slots);
            else
                snprintf(text, sizeof text, "a thread's allocations were not tracked: out of "
                         "memory for its state");
            emit_note(text);
        }
        unlock();
        return NULL;
    }
    t->index = g_next_thread++;
    t->s.id = t->index;
    t->self = (uint64_t)pthread_self();
    for (size_t i = 0; i < STACK_MEMO; i++)
        t->memo[i].word = ~0u;   /* an empty entry is key 0, stack 0 */
    __atomic_store_n(&t->limit, -1, __ATOMIC_RELAXED);
    t->owner = ~0ull;
    t->next = g_threads;
    g_threads = t;
    uint8_t rec[32];
    size_t k = 0;
    rec[k++] = CAPTURE_THREAD;
    k += capture_put_u(rec + k, t->index);
    k += capture_put_u(rec + k, (uint64_t)syscall(SYS_gettid));
    emit(rec, k);
    unlock();
    st_set(t);
    if (g_key_ok)
        pthread_setspecific(g_key, t);   /* may allocate: the guard is set */
    return t;
}

HOT struct thread_state *thread_get(void)
{
    struct thread_state *t = st_get();
    return __builtin_expect(t != NULL, 1) ? t : thread_new();
}

static uint64_t time_record(uint8_t *p, int force);

/* After taking g_owner from value o: send its last writer (another thread,
 * if its state is still there: states are kept, see thread_state) to its
 * slow path, where it sees that it no longer owns the segment.  A stale
 * slot, a spare state or one given to a new thread only takes one slow
 * path for nothing. */
static void stop_writer(uint64_t o, const struct thread_state *self)
{
    struct thread_state **slots = __atomic_load_n(&g_slots, __ATOMIC_ACQUIRE);
    uint64_t slot = o & OWNER_MASK;
    if (slots == NULL || slot >= MAX_SLOTS)
        return;
    struct thread_state *w = __atomic_load_n(&slots[slot], __ATOMIC_ACQUIRE);
    if (w != NULL && w != self)
        __atomic_store_n(&w->limit, -1, __ATOMIC_RELAXED);
}

/* The slow path of event_room: a new block, a MARK, and/or a TIME record
 * first.  Leaves t->limit at the last `used` with which the fast path may
 * write: room for an event, and no later than the next clock check. */
static __attribute__((noinline)) uint8_t *event_room_slow(struct thread_state *t)
{
    uint8_t *p = capture_stream_room(&t->s, EVENT_ROOM);
    if (p == NULL) {
        lock();
        int rc = g_state == ST_ON ? capture_stream_next(&g_w, &t->s, EVENT_ROOM) : -1;
        if (rc != 0 && g_state == ST_ON)
            stop_tracking();
        unlock();
        if (rc != 0) {
            __atomic_store_n(&t->limit, -1, __ATOMIC_RELAXED);
            return NULL;
        }
        t->time_at = 0;
        p = capture_stream_room(&t->s, EVENT_ROOM);
    }
    uint64_t o = __atomic_load_n(&g_owner, __ATOMIC_RELAXED);
    if (o != t->owner) {
        /* a new segment: the counter and the writer change together, so
         * whoever sees itself named is the last to have taken a number */
        uint64_t n;
        do {
            n = (((o >> OWNER_BITS) + 1) << OWNER_BITS) | (t->slot & OWNER_MASK);
        } while (!__atomic_compare_exchange_n(&g_owner, &o, n, 0, __ATOMIC_SEQ_CST,
                                              __ATOMIC_RELAXED));
        stop_writer(o, t);
        size_t k = 0;
        p[k++] = CAPTURE_MARK;
        k += capture_put_u(p + k, n >> OWNER_BITS);
        capture_stream_commit(&t->s, k);
        p += k;
        t->owner = n;
    }
    if (t->s.used >= t->time_at) {
        /* the clock, every TIME_STRIDE bytes of the stream (and at every
         * event in sampled mode) */
        size_t k = time_record(p, 0);
        if (k) {
            capture_stream_commit(&t->s, k);
            p += k;
        }
        t->time_at = g_sample_bytes ? t->s.used : t->s.used + TIME_STRIDE;
    }
    int64_t room = capture_stream_limit(&t->s, EVENT_ROOM);
    int64_t clock = (int64_t)t->time_at - 1;
    __atomic_store_n(&t->limit, room < clock ? room : clock, __ATOMIC_RELAXED);
    /* The fast path looks at its own limit only, so whoever takes g_owner
     * from this thread sets it to -1 after its CAS (stop_writer).  Looking
     * at g_owner again after the store (store, fence, load against the
     * other's CAS, then store) leaves the limit -1 either way: either that
     * load sees the new owner, or the other thread's -1 comes after this
     * store. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g_owner, __ATOMIC_RELAXED) != t->owner)
        __atomic_store_n(&t->limit, -1, __ATOMIC_RELAXED);
    return p;
}

/* Whether an event of at most EVENT_MAX bytes may go at t's `used` as it
 * is: room before t->limit, which also stands for the next clock check
 * and is -1 once another thread wrote since this one's last MARK
 * (stop_writer).  A load and a compare (a plain load: the word is
 * aligned, and a stale value only delays the slow path by an event, as
 * the owner test it replaces did). */
HOT int room_ready(const struct thread_state *t)
{
    return __builtin_expect((int64_t)t->s.used <= t->limit, 1);
}

/* Where to write an event of at most EVENT_MAX bytes in this thread's
 * stream (after a MARK when another thread wrote since; a TIME record now
 * and then), or NULL. */
HOT uint8_t *event_room(struct thread_state *t)
{
    if (!room_ready(t))
        return event_room_slow(t);
    return t->s.base + t->s.used;
}

/* Publish the fixed event of len bytes just written in t's window (win
 * and used as read before the writes: they do not alias them). */
HOT void commit_fixed(struct thread_state *t, uint8_t *win, uint32_t used, uint32_t len)
{
    t->s.used = used + len;
    __atomic_store_n((uint32_t *)(void *)(win + 4), used + len, __ATOMIC_RELEASE);
}

/* A TIME record at p when 10 ms have passed since the last one (any
 * thread's), or force; its length, 0 when none is due. */
static uint64_t time_record(uint8_t *p, int force)
{
    uint64_t now = now_ns(), last = __atomic_load_n(&g_last_time_ns, __ATOMIC_RELAXED);
    if (!force && (now - last < TIME_PERIOD_NS ||
                   !__atomic_compare_exchange_n(&g_last_time_ns, &last, now, 0, __ATOMIC_RELAXED,
                                                __ATOMIC_RELAXED)))
        return 0;
    size_t k = 0;
    p[k++] = CAPTURE_TIME;
    k += capture_put_u(p + k, now - g_t0_ns);
    k += capture_put_u(p + k, read_rss());
    return k;
}

static uint64_t g_finalizing;           /* &_PyRuntime._finalizing, or 2.7/3.6's _Py_Finalizing */

/* Note once that the interpreter began to shut down: the script, its atexit
 * handlers and its non-daemon threads are done, modules not yet cleared. */
static int (*g_is_initialized)(void);   /* 2.7: Py_IsInitialized, which Py_Finalize clears first */
static int g_was_initialized;

static __attribute__((noinline)) void check_finalizing(struct thread_state *t)
{
    const volatile uint64_t *watch = __atomic_load_n(&g_fin_watch, __ATOMIC_ACQUIRE);
    if (g_state != ST_ON)
        return;
    int now;
    if (g_finalizing) {
        now = *(volatile uint64_t *)(uintptr_t)g_finalizing != 0;
    } else if (g_is_initialized) {
        int init = g_is_initialized();
        now = g_was_initialized && !init;
        g_was_initialized |= init;
    } else {
        return;
    }
    int expected = 0;
    if (now && __atomic_compare_exchange_n(&g_saw_finalizing, &expected, 1, 0, __ATOMIC_RELAXED,
                                           __ATOMIC_RELAXED)) {
        /* unless tracking stopped since */
        __atomic_compare_exchange_n(&g_fin_watch, &watch, &g_zero, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED);
        uint8_t *p = event_room(t);
        if (p) {
            p[0] = CAPTURE_FINALIZING;
            capture_stream_commit(&t->s, 1);
        }
    }
}

/* An event in the tagged form (capture.h): MMAP, MUNMAP, and an ALLOC or
 * FREE whose address or size a fixed event cannot carry.  The address is a
 * delta from the previous tagged event's. */
static __attribute__((noinline)) void write_tagged(struct thread_state *t, uint8_t *p, uint8_t tag,
                                                   uint64_t addr, uint64_t size, uint32_t stack)
{
    size_t k = 0;
    p[k++] = tag;
    k += capture_put_s(p + k, (int64_t)(addr - t->last_addr));
    t->last_addr = addr;
    if (tag != CAPTURE_FREE)
        k += capture_put_u(p + k, size);
    if (tag == CAPTURE_ALLOC || tag == CAPTURE_MMAP)
        k += capture_put_u(p + k, stack);
    capture_stream_commit(&t->s, k);
}

/* Before any event (two loads): the first free of shutdown must come after
 * the note, and in sampled mode it may be the first event since. */
HOT void watch_finalizing(struct thread_state *t)
{
    if (__builtin_expect(*g_fin_watch != 0, 0))
        check_finalizing(t);
}

/* Where a fixed event goes: the room event_room gave (NULL: none) and the
 * window and `used` commit_fixed publishes, read before the event's stores
 * (they do not alias them). */
struct event_at {
    uint8_t *p, *win;
    uint32_t used;
};

/* What write_free and write_alloc do first: the finalising watch and the
 * room. */
HOT struct event_at event_begin(struct thread_state *t)
{
    watch_finalizing(t);
    struct event_at e = {event_room(t), NULL, 0};
    if (__builtin_expect(e.p != NULL, 1)) {
        e.win = t->s.win;
        e.used = t->s.used;
    }
    return e;
}

/* A fixed free of block a (a multiple of 8 below 2^48) at p, which has
 * room for 8 bytes: FREE4 when a's upper half is the stream's, else FREE6,
 * which makes it so.  Its length. */
HOT uint32_t put_free(struct thread_state *t, uint8_t *p, uint64_t a)
{
    if (__builtin_expect((a >> 32) == t->high, 1))
        return (uint32_t)capture_put_fixed_free4(p, a);
    t->high = a >> 32;
    return (uint32_t)capture_put_fixed_free(p, a);
}

/* A fixed allocation at p (room for 16 bytes) of block a (a multiple of 8
 * below 2^48) of size bytes (below 4 GiB): ALLOC8 when it can, else
 * ALLOC14.  Its length. */
HOT uint32_t put_alloc(struct thread_state *t, uint8_t *p, uint64_t a, uint64_t size,
                       uint32_t stack)
{
    if (__builtin_expect((a >> 32) == t->high && size - 1 < CAPTURE_ALLOC8_SIZE_MAX &&
                             stack <= CAPTURE_ALLOC8_STACK_MAX,
                         1))
        return (uint32_t)capture_put_fixed_alloc8(p, a, size, stack);
    t->high = a >> 32;
    return (uint32_t)capture_put_fixed_alloc(p, a, size, stack);
}

/* put_alloc for 1 <= size <= CAPTURE_ALLOC8_SIZE_MAX (a block pymalloc
 * served) and the stack as its cache entry's `word`, which has ALLOC8's
 * stack bits ready: one add makes the word. */
HOT uint32_t put_alloc_small(struct thread_state *t, uint8_t *p, uint64_t a, uint64_t size,
                             uint32_t word)
{
    if (__builtin_expect((a >> 32) == t->high, 1))
        return (uint32_t)capture_put_fixed_alloc8_word(p, a, (uint32_t)size + word);
    t->high = a >> 32;
    return (uint32_t)capture_put_fixed_alloc(p, a, size, (word + 1) >> CAPTURE_ALLOC8_STACK_SHIFT);
}

/* A free into this thread's stream: one 4-byte store, mostly. */
HOT void write_free(struct thread_state *t, uint64_t addr)
{
    struct event_at e = event_begin(t);
    if (__builtin_expect(e.p == NULL, 0))
        return;
    if (__builtin_expect((addr & CAPTURE_FIXED_ADDR_BAD) == 0, 1))
        commit_fixed(t, e.win, e.used, put_free(t, e.p, addr));
    else
        write_tagged(t, e.p, CAPTURE_FREE, addr, 0, 0);
}

/* An allocation into this thread's stream: one 8-byte store, mostly. */
HOT void write_alloc(struct thread_state *t, uint64_t addr, uint64_t size, uint32_t stack)
{
    struct event_at e = event_begin(t);
    if (__builtin_expect(e.p == NULL, 0))
        return;
    if (__builtin_expect(((addr & CAPTURE_FIXED_ADDR_BAD) | (size >> 32)) == 0, 1))
        commit_fixed(t, e.win, e.used, put_alloc(t, e.p, addr, size, stack));
    else
        write_tagged(t, e.p, CAPTURE_ALLOC, addr, size, stack);
}

/* Any event (the rare kinds: MMAP, MUNMAP). */
static void write_event(struct thread_state *t, uint8_t tag, uint64_t addr, uint64_t size,
                        uint32_t stack)
{
    if (tag == CAPTURE_FREE) {
        write_free(t, addr);
        return;
    }
    if (tag == CAPTURE_ALLOC) {
        write_alloc(t, addr, size, stack);
        return;
    }
    watch_finalizing(t);
    uint8_t *p = event_room(t);
    if (p != NULL)
        write_tagged(t, p, tag, addr, size, stack);
}

/* ---- Python stacks -------------------------------------------------------- */

/* A frame as walked.  A code object is known by its address and a
 * fingerprint of what it points to (line table, name, file, first line):
 * pymalloc hands a freed code object's memory, and its line table's, to the
 * next one compiled, so the address alone is not enough. */
struct pyframe_key {
    uint64_t code, table, ident;
    int64_t pos;
};

static int self_read(struct reader *r, uint64_t addr, void *buf, size_t len, struct pm_error *err)
{
    (void)r;
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (n != (ssize_t)len)
        return pm_fail(err, PM_EREAD, "bad address 0x%llx", (unsigned long long)addr);
    return 0;
}

static void self_close(struct reader *r) { (void)r; }

static const struct reader_ops self_ops = {self_read, NULL, self_close, NULL};

static uint64_t load64(uint64_t addr) { return *(const uint64_t *)(uintptr_t)addr; }

/* Walk this thread's Python frames, innermost first, into keys; returns the
 * depth (0 when the thread has no Python frames or Python is not there). */
static size_t walk_python(struct pyframe_key *keys, size_t cap)
{
    if (!g_py)
        return 0;
    const struct py_layout *l = &g_layout;
    uint64_t ts;
    if (g_tstate_current) {
        /* 2.7: PyGILState_GetThisThreadState takes a lock that malloc may be
         * called under; the current thread state is ours if it says so */
        ts = load64(g_tstate_current);
        if (ts == 0 || load64(ts + (uint64_t)l->tstate_thread_id) != (uint64_t)pthread_self())
            return 0;
    } else {
        ts = (uint64_t)(uintptr_t)g_this_tstate();
        if (ts == 0)
            return 0;
    }
    uint64_t frame = load64(ts + (uint64_t)l->tstate_frame);
    if (l->frames == PY_FRAMES_CFRAME && frame)
        frame = load64(frame + (uint64_t)l->cframe_current_frame);
    size_t n = 0;
    for (unsigned guard = 0; frame != 0 && guard < 100000; guard++) {
        uint64_t code, next;
        int64_t pos;
        if (l->frames == PY_FRAMES_OBJECT) {
            code = load64(frame + (uint64_t)l->frame_code);
            next = load64(frame + (uint64_t)l->frame_back);
            int32_t lasti = *(const int32_t *)(uintptr_t)(frame + (uint64_t)l->frame_lasti);
            pos = l->lines == PY_LINES_LINETABLE310 && lasti >= 0 ? (int64_t)lasti * 2 : lasti;
        } else {
            code = load64(frame + (uint64_t)l->iframe_code);
            next = load64(frame + (uint64_t)l->iframe_previous);
            if (l->minor >= 12 &&
                *(const uint8_t *)(uintptr_t)(frame + (uint64_t)l->iframe_owner) ==
                    FRAME_OWNED_BY_CSTACK) {
                frame = next;
                continue;
            }
            uint64_t instr = load64(frame + (uint64_t)l->iframe_instr);
            uint64_t start = code + (uint64_t)l->code_adaptive;
            pos = instr + 2 < start ? -1 : ((int64_t)instr - (int64_t)start) / 2;
        }
        frame = next;
        if (code == 0 || (code & 7) != 0 || load64(code + (uint64_t)l->ob_type) != g_code_type)
            continue;   /* 3.13: f_executable may be another object */
        if (n == cap) {
            /* keep the innermost `cap` frames */
            break;
        }
        keys[n].code = code;
        keys[n].table = load64(code + (uint64_t)l->code_linetable);
        keys[n].ident = load64(code + (uint64_t)l->code_filename) ^
                        (load64(code + (uint64_t)l->code_name) << 1) ^
                        ((uint64_t)*(const uint32_t *)(uintptr_t)(code + (uint64_t)l->code_firstlineno)
                         << 40);
        keys[n].pos = pos;
        n++;
    }
    return n;
}

/* Code objects deallocated, counted by their address's slot
 * (wrap_code_dealloc): a code object's definition is keyed with its slot's
 * count too, so one made again at a freed one's address, whose line
 * table, file name and name may be at the same addresses as well, is
 * defined anew.  A death in the slot of a code object still alive only
 * has that one defined again (same name, file and lines). */
#define CODE_DEATH_SLOTS 4096u
static uint32_t g_code_deaths[CODE_DEATH_SLOTS];

static uint32_t code_death_slot(uint64_t code)
{
    return (uint32_t)(((code >> 4) * 0x9e3779b97f4a7c15ULL) >> 52);
}

/* Decode and write the code object (called with the lock held). */
static uint32_t intern_code(uint64_t code, uint64_t table, uint64_t ident)
{
    ident ^= (uint64_t)__atomic_load_n(&g_code_deaths[code_death_slot(code)], __ATOMIC_RELAXED) *
             0xc2b2ae3d27d4eb4fULL;
    uint32_t id = table_get(&g_codes, code, table, ident);
    if (id)
        return id;
    const struct py_layout *l = &g_layout;
    char name[1024], file[4096];
    uint8_t *lt = NULL;
    size_t lt_len = 0;
    uint64_t name_ptr = load64(code + (uint64_t)(l->code_qualname != PY_OFF_NONE ? l->code_qualname
                                                                                 : l->code_name));
    if (py_read_str(&g_objects, name_ptr, name, sizeof name, NULL) != 0)
        strcpy(name, "<unknown>");
    if (py_read_str(&g_objects, load64(code + (uint64_t)l->code_filename), file, sizeof file,
                    NULL) != 0)
        strcpy(file, "<unknown>");
    if (py_read_bytes(&g_objects, table, CAPTURE_TABLE_MAX, &lt, &lt_len, NULL) != 0) {
        lt = NULL;
        lt_len = 0;
    }
    int32_t first = *(const int32_t *)(uintptr_t)(code + (uint64_t)l->code_firstlineno);
    uint32_t name_id = intern_string(name, strlen(name));
    uint32_t file_id = intern_string(file, strlen(file));
    size_t cap = 48 + lt_len;
    uint8_t small[4096];
    uint8_t *rec = cap <= sizeof small ? small : raw_map(cap);
    if (rec) {
        size_t k = 0;
        rec[k++] = CAPTURE_CODE;
        k += capture_put_u(rec + k, name_id);
        k += capture_put_u(rec + k, file_id);
        k += capture_put_s(rec + k, first);
        k += capture_put_u(rec + k, lt_len);
        if (lt_len)
            memcpy(rec + k, lt, lt_len);
        emit(rec, k + lt_len);
        if (rec != small)
            raw_unmap(rec, cap);
    }
    free(lt);   /* the guard is set: goes to glibc untracked */
    id = ++g_ncodes;
    table_put(&g_codes, code, table, ident, id);
    return id;
}

static uint32_t intern_pyframe(const struct pyframe_key *k)
{
    uint32_t code = intern_code(k->code, k->table, k->ident);
    uint32_t id = table_get(&g_frames, code, (uint64_t)k->pos, 1);
    if (id)
        return id;
    uint8_t rec[32];
    size_t n = 0;
    rec[n++] = CAPTURE_PYFRAME;
    n += capture_put_u(rec + n, code);
    n += capture_put_s(rec + n, k->pos);
    emit(rec, n);
    id = ++g_nframes;
    table_put(&g_frames, code, (uint64_t)k->pos, 1, id);
    return id;
}

static uint32_t intern_natframe(uint64_t ip)
{
    uint32_t id = table_get(&g_frames, ip, 0, 2);
    if (id)
        return id;
    Dl_info info;
    uint32_t lib = 0, sym = 0;
    uint64_t off = ip;
    if (dladdr((void *)(uintptr_t)ip, &info) && info.dli_fname) {
        lib = intern_string(info.dli_fname, strlen(info.dli_fname));
        off = ip - (uint64_t)(uintptr_t)info.dli_fbase;
        if (info.dli_sname && info.dli_saddr)
            sym = intern_string(info.dli_sname, strlen(info.dli_sname));
    }
    uint8_t rec[40];
    size_t n = 0;
    rec[n++] = CAPTURE_NATFRAME;
    n += capture_put_u(rec + n, lib);
    n += capture_put_u(rec + n, off);
    n += capture_put_u(rec + n, sym);
    emit(rec, n);
    id = ++g_nframes;
    table_put(&g_frames, ip, 0, 2, id);
    return id;
}

static uint32_t intern_node(uint32_t parent, uint32_t frame)
{
    uint32_t id = table_get(&g_nodes, parent, frame, 0);
    if (id)
        return id;
    uint8_t rec[24];
    size_t n = 0;
    rec[n++] = CAPTURE_STACK;
    n += capture_put_u(rec + n, parent);
    n += capture_put_u(rec + n, frame);
    emit(rec, n);
    id = ++g_nstacks;
    table_put(&g_nodes, parent, frame, 0, id);
    return id;
}

/* One captured stack, before interning. */
struct raw_stack {
    struct pyframe_key py[MAX_DEPTH];
    size_t npy;
    uint64_t ip[MAX_NATIVE];
    size_t nnative;
};

static void check_python_hooks(void);
static int g_hooks_checked;

static uint64_t g_eval_start, g_eval_end;   /* the eval loop: native frames stop there */
static uint64_t g_self_start, g_self_end;   /* this library: its frames are skipped */

static size_t capture_native(uint64_t *out)
{
    void *ips[MAX_NATIVE + 8];
    int n = unw_backtrace(ips, (int)(sizeof ips / sizeof ips[0]));
    size_t k = 0;
    for (int i = 0; i < n && k < MAX_NATIVE; i++) {
        uint64_t ip = (uint64_t)(uintptr_t)ips[i];
        if (ip >= g_self_start && ip < g_self_end)
            continue;
        if (g_eval_start && ip >= g_eval_start && ip < g_eval_end)
            break;   /* above here the Python frames say it better */
        out[k++] = ip;
    }
    return k;
}

/* One element (a fingerprint, a C frame) into the chain's hash. */
HOT void hash_step(uint64_t *h, uint64_t k)
{
    uint64_t a = k * 0x9e3779b97f4a7c15ULL;
    *h = ((*h << 23) | (*h >> 41)) + (a ^ (a >> 29));
}

/* One frame (code object, position) into the chain's hash: four
 * instructions (rotate, xor, multiply, add). */
HOT void hash_frame(uint64_t *h, uint64_t code, uint64_t pos)
{
    *h = (((*h << 23) | (*h >> 41)) ^ code) * 0x9e3779b97f4a7c15ULL + pos;
}

/* One 3.11+ interpreter frame into the chain's hash by its instruction
 * pointer alone (two instructions, xor and multiply: each step is a
 * bijection of the hash, and every bit of it reaches the top bits, which
 * pick the cache set): the bytecode is inside the code object, so while
 * the code object lives the pointer names it too (and g_code_gen changes
 * when one is freed). */
HOT void hash_instr(uint64_t *h, uint64_t instr)
{
    *h = (*h ^ instr) * 0x9e3779b97f4a7c15ULL;
}

/* The chain's key from its hash and depth (Python frames | C frames << 32):
 * the hash's last step mixed it already (the top bits pick a cache set),
 * and the depth changes only its low bits. */
HOT uint64_t chain_key(uint64_t h, uint64_t depth)
{
    return h ^ depth;
}

/* The stack's key, cheaply: this thread's frames as (code, position),
 * innermost first, hashed (64 bits) with their number.  The key is the
 * stack itself, not where its frames happen to be: two call chains that
 * share their top frames' addresses (3.11+ frames live on a per-thread
 * stack, so the same depth means the same address) never share a key.  A
 * code object is its address plus g_code_gen, bumped whenever one is
 * deallocated (wrap_code_dealloc); where those are not seen (the wrap
 * could not be made) the key also reads the code object's fingerprint.
 *
 * One 64-bit hash is the key (the shared table adds the depth).  Each step
 * h' = (rotl(h, 23) ^ code) * odd + pos (the straight walk's on 3.11+:
 * (h ^ instruction pointer) * odd) is a bijection of h for a given
 * frame, so chains of one depth that differ in a single frame (or only in
 * the order of two) never collide; two that differ in several collide when
 * their differences cancel, which for code addresses and bytecode pointers
 * the program does not choose is a 2^-64 event per pair of chains: with a
 * million distinct stacks of one depth, about 3e-8 for the whole run (the
 * 128-bit key this replaces cost four more instructions a frame).
 *
 * Returns the depth (Python frames | native frames << 32); 0: no stack. */
static uint64_t chain_hash(const struct thread_state *t, uint64_t *hp, uint64_t *native,
                           size_t *nnative)
{
    uint64_t h = CODE_GEN_SEED;
    uint64_t npy = 0;
    if (g_py) {
        const struct py_layout *l = &g_layout;
        uint64_t ts = 0;
        if (g_tstate_current) {
            ts = load64(g_tstate_current);
            if (ts && load64(ts + (uint64_t)l->tstate_thread_id) != t->self)
                ts = 0;
        } else {
            /* Python's allocators run with the GIL held: its holder is
             * this thread's state when it says it is ours (two loads,
             * against a call into PyGILState and pthread_getspecific) */
            if (g_gil_holder) {
                ts = load64(g_gil_holder);
                if (ts && load64(ts + (uint64_t)l->tstate_thread_id) != t->self)
                    ts = 0;
            }
            if (ts == 0)
                ts = (uint64_t)(uintptr_t)g_this_tstate();
        }
        uint64_t frame = ts ? load64(ts + (uint64_t)l->tstate_frame) : 0;
        if (l->frames == PY_FRAMES_CFRAME && frame)
            frame = load64(frame + (uint64_t)l->cframe_current_frame);
        int check_type = l->minor >= 13;   /* f_executable may be another object */
        int fingerprint = !g_code_frees_seen;
        h = __atomic_load_n(&g_code_gen, __ATOMIC_RELAXED);
        if (l->frames == PY_FRAMES_CFRAME && !fingerprint) {
            /* the common case (3.11, 3.12), the offsets in registers; a
             * cycle (a damaged chain) ends at MAX_DEPTH frames or shims */
            const uint64_t oc = (uint64_t)l->iframe_code, oi = (uint64_t)l->iframe_instr,
                           op = (uint64_t)l->iframe_previous, oo = (uint64_t)l->iframe_owner;
            if (l->minor < 12) {
                while (frame != 0 && npy < MAX_DEPTH) {
                    uint64_t code = load64(frame + oc), pos = load64(frame + oi);
                    frame = load64(frame + op);
                    hash_frame(&h, code, pos);
                    npy++;
                }
            } else {
                /* 3.12: C-stack shims are skipped (and a cycle of them ends) */
                unsigned left = MAX_DEPTH * 4;
                while (frame != 0 && npy < MAX_DEPTH && left-- > 0) {
                    uint64_t code = load64(frame + oc), pos = load64(frame + oi);
                    int shim = *(const uint8_t *)(uintptr_t)(frame + oo) == FRAME_OWNED_BY_CSTACK;
                    frame = load64(frame + op);
                    if (__builtin_expect(shim, 0))
                        continue;
                    hash_frame(&h, code, pos);
                    npy++;
                }
            }
            frame = 0;
        }
        for (unsigned guard = 0; frame != 0 && guard < 100000 && npy < MAX_DEPTH; guard++) {
            uint64_t code, pos;
            if (l->frames == PY_FRAMES_OBJECT) {
                code = load64(frame + (uint64_t)l->frame_code);
                pos = *(const uint32_t *)(uintptr_t)(frame + (uint64_t)l->frame_lasti);
                frame = load64(frame + (uint64_t)l->frame_back);
            } else {
                code = load64(frame + (uint64_t)l->iframe_code);
                pos = load64(frame + (uint64_t)l->iframe_instr);
                int shim = l->minor >= 12 && *(const uint8_t *)(uintptr_t)(
                                                 frame + (uint64_t)l->iframe_owner) ==
                                                 FRAME_OWNED_BY_CSTACK;
                frame = load64(frame + (uint64_t)l->iframe_previous);
                if (shim)
                    continue;
            }
            if (check_type && (code == 0 || (code & 7) != 0 ||
                               load64(code + (uint64_t)l->ob_type) != g_code_type))
                continue;
            hash_frame(&h, code, pos);
            if (fingerprint)
                hash_step(&h, load64(code + (uint64_t)l->code_linetable) ^
                                  (load64(code + (uint64_t)l->code_filename) << 1) ^
                                  load64(code + (uint64_t)l->code_name));
            npy++;
        }
    }
    *nnative = 0;
    if (g_native) {
        *nnative = capture_native(native);
        for (size_t i = 0; i < *nnative; i++)
            hash_step(&h, native[i]);
    }
    uint64_t depth = npy | ((uint64_t)*nnative << 32);
    *hp = chain_key(h, depth);
    return depth;
}

/* Intern a stack whose key missed (lock held): walk it fully (fingerprints,
 * positions) and write what is new. */
static __attribute__((noinline)) uint32_t stack_intern_walk(const uint64_t *native, size_t nnative)
{
    struct raw_stack s;
    s.npy = walk_python(s.py, MAX_DEPTH);
    s.nnative = nnative;
    if (nnative)
        memcpy(s.ip, native, nnative * sizeof *native);
    uint32_t node = 0;
    for (size_t i = s.npy; i-- > 0;)
        node = intern_node(node, intern_pyframe(&s.py[i]));
    for (size_t i = s.nnative; i-- > 0;)
        node = intern_node(node, intern_natframe(s.ip[i]));
    return node;
}

/* A key the thread's cache did not have (m: its set): the shared table
 * (lock), then a full walk.  The key goes into the set's first entry, whose
 * key moves to the second (unless its id is too large for ALLOC8: over 8
 * million stacks). */
static __attribute__((noinline)) uint32_t stack_id_miss(struct stack_memo *m, uint64_t h,
                                                        uint64_t depth, const uint64_t *native,
                                                        size_t nnative)
{
    lock();
    uint32_t id = 0;
    if (g_state == ST_ON) {
        id = table_get(&g_chains, h, depth, 0);
        if (id == 0) {
            id = stack_intern_walk(native, nnative);
            if (id)
                table_put(&g_chains, h, depth, 0, id);
        }
    }
    unlock();
    /* the fast paths write a cached id into ALLOC8 unchecked (alloc_event_walk) */
    if (id <= CAPTURE_ALLOC8_STACK_MAX) {
        m[1] = m[0];
        m[0] = (struct stack_memo){h, id, (id << CAPTURE_ALLOC8_STACK_SHIFT) - 1};
    }
    return id;
}

/* Which walk stack_id takes, decided once the Python hooks are checked
 * (check_python_hooks): a straight loop over the thread's frames with the
 * version's offsets in registers, or stack_id_slow (C frames, no GIL holder
 * to find the thread state by, code-object frees not seen, 2.7, 3.6, until
 * the hooks are checked).  Measured (callgrind, bench/mem_bench.py
 * --instructions, pyenv builds, full tracking): through stack_id_slow
 * 3.8-3.10 took +160-167 instructions per event, 3.12 +140, 3.13 +185 (the
 * general loop's per-frame decisions), 3.11 +107 on its straight path; with
 * a straight walk each, 3.8-3.10 +104-106, 3.11 +101, 3.12 +112, 3.13
 * +111. */
enum {
    WALK_SLOW = 0,
    WALK_311,      /* 3.11 with the offsets below, as constants */
    WALK_IFRAME,   /* 3.11 (other offsets): _PyInterpreterFrame chain via the cframe */
    WALK_SHIMS,    /* 3.12, 3.13: the same, with C-stack shim frames in the chain */
    WALK_OBJECT,   /* 3.7-3.10: PyFrameObject chain (f_code, f_lasti, f_back) */
};
static int g_walk;
/* The straight walks' offsets (g_layout's, as unsigned). */
static struct {
    uint64_t thread_id, frame, cframe, code, pos, prev;
    int via_cframe;                     /* 3.11, 3.12: tstate->cframe->current_frame */
} g_wo;

/* 3.11's offsets (python/layouts_gen.c, CPython 3.11's headers), as
 * constants for WALK_311: set only when g_layout has exactly these. */
#define W311_TSTATE_THREAD_ID 152u
#define W311_TSTATE_FRAME 56u
#define W311_CFRAME_CURRENT_FRAME 8u
#define W311_IFRAME_CODE 32u
#define W311_IFRAME_INSTR 56u
#define W311_IFRAME_PREVIOUS 48u

/* A key's stack id from the thread's cache: STACK_MEMO / 2 sets of two
 * entries, the set chosen by the key's top bits (the multiply's best
 * mixed).  Two ways, because the keys of a loop's few hot stacks share a
 * set often enough: with one entry a slot, two of bench/mem_workload.py's
 * stacks took turns in one, 10 000 misses a round (~114 instructions each,
 * the lock and the shared table), depending on where the code objects
 * were. */
HOT struct stack_memo *memo_set(struct thread_state *t, uint64_t h)
{
    return &t->memo[(h >> 57) << 1];
}

/* Set m's entry for key h, or NULL. */
HOT const struct stack_memo *memo_find(const struct stack_memo *m, uint64_t h)
{
    if (__builtin_expect(m[0].h == h, 1))
        return &m[0];
    if (m[1].h == h)
        return &m[1];
    return NULL;
}

/* Whether set m holds key h: its id into *id. */
HOT int memo_hit(const struct stack_memo *m, uint64_t h, uint32_t *id)
{
    const struct stack_memo *e = memo_find(m, h);
    if (e == NULL)
        return 0;
    *id = e->id;
    return 1;
}

/* What alloc_event_walk takes for a stack of no frames (id 0). */
static const struct stack_memo g_memo_none = {0, 0, ~0u};

HOT uint32_t memo_get(struct thread_state *t, uint64_t h, uint64_t depth, const uint64_t *native,
                      size_t nnative)
{
    struct stack_memo *m = memo_set(t, h);
    uint32_t id;
    if (memo_hit(m, h, &id))
        return id;
    return stack_id_miss(m, h, depth, native, nnative);
}

/* stack_id, every case but the straight walks. */
static __attribute__((noinline)) uint32_t stack_id_slow(struct thread_state *t)
{
    if (__builtin_expect(!g_hooks_checked, 0))
        check_python_hooks();
    uint64_t h, native[MAX_NATIVE];
    size_t nnative;
    uint64_t depth = chain_hash(t, &h, native, &nnative);
    if (depth == 0)
        return 0;
    return memo_get(t, h, depth, native, nnative);
}

/* One frame of a straight walk into *h: (code, f_lasti) for a frame
 * object, the instruction pointer for an interpreter frame; returns the
 * frame below (0: the chain's end). */
HOT uint64_t walk_step(uint64_t *h, uint64_t frame, uint64_t oc, uint64_t oi, uint64_t op,
                       int objects)
{
    if (objects)
        hash_frame(h, load64(frame + oc), *(const uint32_t *)(uintptr_t)(frame + oi));
    else
        hash_instr(h, load64(frame + oi));
    return load64(frame + op);
}

/* The straight walk: the thread's frames (innermost first, MAX_DEPTH at
 * most: a damaged chain's cycle ends there) hashed into *h; returns how
 * many it took.  The offsets are arguments so that WALK_311's are
 * constants; objects: frame objects (3.7-3.10), else interpreter frames.
 * Four frames a turn, so the bound is checked once per four.  Unlike
 * chain_hash, it does not decide anything per frame: 3.13's check that
 * f_executable is a code object is left to the full walk of a new key
 * (walk_python skips what is not), and 3.12+'s C-stack shim frames are
 * hashed and counted like the others (they are in the same places for the
 * same chain).  Keys for one stack can thus differ from chain_hash's; both
 * lead to its one id.
 *
 * Per frame this is two loads (instruction pointer, previous) and two
 * ALU instructions on 3.11+, three loads and four on 3.7-3.10, and the
 * test for the chain's end: callgrind counts about 5.75 and 10
 * instructions a frame, which is what a deep stack adds to every
 * allocation (bench/mem_bench.py --depth). */
HOT uint64_t walk_frames(uint64_t ts, uint64_t *h, uint64_t of, int via_cframe, uint64_t ocf,
                         uint64_t oc, uint64_t oi, uint64_t op, int objects)
{
    uint64_t frame = load64(ts + of);
    if (via_cframe && __builtin_expect(frame != 0, 1))
        frame = load64(frame + ocf);
    uint64_t n = 0;
    while (frame != 0) {
        if ((frame = walk_step(h, frame, oc, oi, op, objects)) == 0)
            return n + 1;
        if ((frame = walk_step(h, frame, oc, oi, op, objects)) == 0)
            return n + 2;
        if ((frame = walk_step(h, frame, oc, oi, op, objects)) == 0)
            return n + 3;
        frame = walk_step(h, frame, oc, oi, op, objects);
        n += 4;
        if (n >= MAX_DEPTH)
            break;
    }
    return n;
}

/* A straight walk's key for this thread (*key, and *npy frames; no
 * frames: *npy 0), or 0 where it is stack_id_slow's to find: the GIL
 * holder is not this thread, or 3.12+'s shims filled MAX_DEPTH (a chain
 * this long may hold more Python frames than the key covered, and the
 * stack keeps MAX_DEPTH of them).  `walk` is a constant where the caller
 * inlines it for WALK_311, so that path has every offset as a constant. */
HOT int walk_key(const struct thread_state *t, int walk, uint64_t *key, uint64_t *npy)
{
    uint64_t ts = load64(g_gil_holder);
    uint64_t tid = walk == WALK_311 ? W311_TSTATE_THREAD_ID : g_wo.thread_id;
    if (__builtin_expect(ts == 0 || load64(ts + tid) != t->self, 0))
        return 0;
    uint64_t h = __atomic_load_n(&g_code_gen, __ATOMIC_RELAXED);
    uint64_t n;
    if (walk == WALK_311)
        n = walk_frames(ts, &h, W311_TSTATE_FRAME, 1, W311_CFRAME_CURRENT_FRAME,
                        W311_IFRAME_CODE, W311_IFRAME_INSTR, W311_IFRAME_PREVIOUS, 0);
    else if (walk == WALK_OBJECT)
        n = walk_frames(ts, &h, g_wo.frame, 0, 0, g_wo.code, g_wo.pos, g_wo.prev, 1);
    else
        n = walk_frames(ts, &h, g_wo.frame, g_wo.via_cframe, g_wo.cframe, g_wo.code, g_wo.pos,
                        g_wo.prev, 0);
    if (walk == WALK_SHIMS && n == MAX_DEPTH)
        return 0;
    *key = chain_key(h, n);
    *npy = n;
    return 1;
}

/* A straight walk's stack id, or stack_id_slow's. */
HOT uint32_t stack_id_walk(struct thread_state *t, int walk)
{
    uint64_t key, npy;
    if (!walk_key(t, walk, &key, &npy))
        return stack_id_slow(t);
    if (npy == 0)
        return 0;
    return memo_get(t, key, npy, NULL, 0);
}

/* This thread's current stack id: its key, looked up in the thread's own
 * cache (no lock, no write).  The fast case, inline: a straight walk
 * (g_walk), where the thread state is the GIL holder's when it is ours
 * (Python's allocators run with the GIL held: two loads, against a call
 * into PyGILState). */
HOT uint32_t stack_id(struct thread_state *t)
{
    int walk = __atomic_load_n(&g_walk, __ATOMIC_ACQUIRE);   /* a plain load on x86 */
    if (__builtin_expect(walk == WALK_311, 1))
        return stack_id_walk(t, WALK_311);
    if (walk != WALK_SLOW)
        return stack_id_walk(t, walk);
    return stack_id_slow(t);
}

/* ---- events --------------------------------------------------------------- */

static double rand_unit(void)
{
    if (t_rng == 0)
        t_rng = mix64(now_ns() ^ (uint64_t)syscall(SYS_gettid)) | 1;
    t_rng ^= t_rng << 13;
    t_rng ^= t_rng >> 7;
    t_rng ^= t_rng << 17;
    return ((double)(t_rng >> 11) + 0.5) / 9007199254740992.0;
}

static int64_t next_gap(void)
{
    return (int64_t)(-log(rand_unit()) * (double)g_sample_bytes) + 1;
}

/* Sampling by volume, once the countdown has run out: the weight to
 * record (the size scaled by 1/p), or 0 for the first call of a thread. */
static __attribute__((noinline)) uint64_t sample_hit(size_t size)
{
    if (t_rng == 0) {
        /* the thread's first allocation: start its countdown */
        t_countdown = next_gap() - (int64_t)size;
        if (t_countdown > 0)
            return 0;
    }
    while (t_countdown <= 0)
        t_countdown += next_gap();
    double p = 1.0 - exp(-(double)size / (double)g_sample_bytes);
    double w = (double)size / (p > 1e-12 ? p : 1e-12);
    return (uint64_t)(w + 0.5);
}

/* The weight to record for an allocation of size bytes, 0 = not sampled:
 * in sampled mode one subtraction unless the countdown runs out. */
HOT uint64_t sample_weight(size_t size)
{
    if (g_sample_bytes == 0)
        return size;
    t_countdown -= (int64_t)size;
    if (__builtin_expect(t_countdown > 0, 1))
        return 0;
    return sample_hit(size);
}

#define TRACKING() (g_state == ST_ON && !busy_get())

/* Sampled mode: which blocks were sampled.  The exact set is g_sampled
 * (lock); in front of it, a counter per address hash in 4 KiB that stays in
 * the cache, raised for each sampled block and lowered when it is freed, so
 * a free of a block never sampled (nearly all of them) costs a load. */
#define MAYBE_SLOTS 4096u
static uint8_t g_maybe_sampled[MAYBE_SLOTS];

HOT size_t maybe_slot(uint64_t a)
{
    return (size_t)(((a >> 4) * 0x9e3779b97f4a7c15ULL) >> 52) & (MAYBE_SLOTS - 1);
}

/* Sampled block bookkeeping (lock held). */
static void sampled_add(uint64_t a)
{
    table_put(&g_sampled, a, 0, 0, 1);
    uint8_t *c = &g_maybe_sampled[maybe_slot(a)];
    if (*c < 255)
        __atomic_store_n(c, (uint8_t)(*c + 1), __ATOMIC_RELAXED);
}

/* Was a sampled (and live)?  Forgets it.  Lock held. */
static int sampled_take(uint64_t a)
{
    if (g_sampled.cap == 0)
        return 0;
    size_t i = slot_hash(a, 0, 0) & (g_sampled.cap - 1);
    while (g_sampled.slots[i].value) {
        struct slot *sl = &g_sampled.slots[i];
        if (sl->k1 == a && sl->k3 == 0) {
            sl->k3 = 1;   /* dead (value 0 would end probes); a later sample of a gets a new slot */
            uint8_t *c = &g_maybe_sampled[maybe_slot(a)];
            if (*c > 0 && *c < 255)   /* a saturated counter stays: "look in the table" */
                __atomic_store_n(c, (uint8_t)(*c - 1), __ATOMIC_RELAXED);
            return 1;
        }
        i = (i + 1) & (g_sampled.cap - 1);
    }
    return 0;
}

HOT int maybe_sampled(uint64_t a)
{
    return __atomic_load_n(&g_maybe_sampled[maybe_slot(a)], __ATOMIC_RELAXED) != 0;
}

/* An allocation of weight w (the guard set by the caller): its stack and the
 * event, in this thread's stream. */
HOT void track_alloc(void *p, uint64_t w, int is_mmap, int may_sample)
{
    struct thread_state *t = thread_get();
    if (t == NULL)
        return;
    uint32_t id = stack_id(t);   /* checks the Python hooks (stack_id_slow) until g_walk */
    uint64_t a = (uint64_t)(uintptr_t)p;
    if (is_mmap) {
        write_event(t, CAPTURE_MMAP, a, w, id);
        return;
    }
    if (may_sample && g_sample_bytes) {
        lock();
        sampled_add(a);
        unlock();
    }
    write_alloc(t, a, w, id);
}

/* An allocation: its stack and the event, in this thread's stream. */
HOT void record_alloc(void *p, size_t size, int is_mmap)
{
    uint64_t w = sample_weight(size);
    if (w == 0)
        return;
    busy_set(1);
    track_alloc(p, w, is_mmap, 1);
    busy_set(0);
}

/* A free, written before the block is released (so it precedes any reuse):
 * the address alone.  Sampled mode: only blocks that were sampled. */
HOT void record_free(void *p)
{
    uint64_t a = (uint64_t)(uintptr_t)p;
    if (g_sample_bytes) {
        if (__builtin_expect(!maybe_sampled(a), 1))
            return;
        busy_set(1);
        lock();
        int was = sampled_take(a);
        unlock();
        if (!was) {
            busy_set(0);
            return;
        }
    }
    busy_set(1);
    struct thread_state *t = thread_get();
    if (t != NULL)
        write_free(t, a);
    busy_set(0);
}

/* Sampled mode's slow paths, out of line: the sampled hooks stay small. */
/* A sampled block p of weight w: noted as sampled, its event written with
 * the thread's stack (the guard set by the caller). */
static void write_sampled_alloc(void *p, uint64_t w)
{
    struct thread_state *t = thread_get();
    if (t == NULL)
        return;
    uint32_t id = stack_id(t);
    uint64_t a = (uint64_t)(uintptr_t)p;
    lock();
    sampled_add(a);
    unlock();
    write_alloc(t, a, w, id);
}

static __attribute__((noinline)) void record_alloc_sampled(void *p, size_t size)
{
    uint64_t w = sample_hit(size);
    if (w != 0) {
        int busy = busy_get();
        busy_set(1);
        write_sampled_alloc(p, w);
        busy_set(busy);
    }
}

static __attribute__((noinline)) void record_free_sampled(void *p)
{
    record_free(p);
}

static void record_munmap(void *p, size_t len)
{
    busy_set(1);
    struct thread_state *t = thread_get();
    if (t != NULL)
        write_event(t, CAPTURE_MUNMAP, (uint64_t)(uintptr_t)p, len, 0);
    busy_set(0);
}

/* ---- Python's allocator domains (PyMem_SetAllocator) ---------------------- */

/* PyMemAllocatorEx and the domains, as in CPython's pymem.h (3.5+). */
struct pymem_allocator {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t size);
    void (*free)(void *ctx, void *ptr);
};
enum { PYMEM_DOMAIN_MEM = 1, PYMEM_DOMAIN_OBJ = 2 };

static void (*g_get_allocator)(int domain, struct pymem_allocator *a);
static void (*g_set_allocator)(int domain, struct pymem_allocator *a);
static struct pymem_allocator g_orig[3];
static int g_use_setallocator;
static int g_hooks_installed;

/* Full mode's allocation event, every case: track_alloc under the guard
 * (it may make a thread's state, intern a stack, start a block), unless
 * tracking stopped or the thread is inside the tracker. */
static __attribute__((noinline)) void *alloc_event_slow(void *p, size_t size)
{
    if (!TRACKING())
        return p;
    busy_set(1);
    track_alloc(p, size, 0, 0);
    busy_set(0);
    return p;
}

/* Full mode's allocation event for block p of size bytes from Python's
 * allocator, with the straight walk `walk` (a constant: see alloc_event),
 * tail-called by the malloc hooks, which return what this returns (p).
 * Only the common case is here, with no call, so that it needs no stack
 * frame and saves no register: the GIL holder's frames, a key the
 * thread's cache holds, room in its window, a fixed-width event.  Anything
 * else (a stack its cache lacks, a full window, another thread's writing
 * since, shutdown to note, tracking stopped) is alloc_event_slow's, which
 * does it all again, the walk too, and the cases with no event (the
 * thread busy) or no thread state yet (gate_state). */
HOT void *alloc_event_walk(void *p, size_t size, int walk, int small)
{
    struct thread_state *t = gate_state();
    if (__builtin_expect(t == NULL || walk == WALK_SLOW || *g_fin_watch != 0, 0))
        return alloc_event_slow(p, size);
    uint64_t key, npy;
    const struct stack_memo *e = &g_memo_none;
    if (__builtin_expect(!walk_key(t, walk, &key, &npy) ||
                         (npy != 0 && (e = memo_find(memo_set(t, key), key)) == NULL), 0))
        return alloc_event_slow(p, size);
    uint64_t a = (uint64_t)(uintptr_t)p;
    /* small: a block of 1 to 512 bytes that pymalloc served (itself, or
     * from the C library's malloc when it had no memory for an arena): a
     * multiple of 8 below 2^47, which a fixed event always carries, and
     * with a cached stack (below 2^23: stack_id_miss), ALLOC8's when its
     * upper half is the stream's */
    if (__builtin_expect(!room_ready(t) ||
                             (!small && ((a & CAPTURE_FIXED_ADDR_BAD) | (size >> 32)) != 0), 0))
        return alloc_event_slow(p, size);
    uint32_t used = t->s.used;
    uint8_t *at = t->s.base + used;
    commit_fixed(t, t->s.win, used,
                 small ? put_alloc_small(t, at, a, size, e->word)
                       : put_alloc(t, at, a, size, e->id));
    return p;
}

/* Two copies: WALK_311's with its offsets as constants, and the others'
 * (which load theirs, so may save registers); and each again for the
 * blocks pymalloc served itself (fast_malloc), whose address and size
 * need no check. */
static __attribute__((noinline)) void *alloc_event_311(void *p, size_t size)
{
    return alloc_event_walk(p, size, WALK_311, 0);
}

static __attribute__((noinline)) void *alloc_event(void *p, size_t size)
{
    return alloc_event_walk(p, size, __atomic_load_n(&g_walk, __ATOMIC_ACQUIRE), 0);
}

static __attribute__((noinline)) void *alloc_event_311_small(void *p, size_t size)
{
    return alloc_event_walk(p, size, WALK_311, 1);
}

static __attribute__((noinline)) void *alloc_event_small(void *p, size_t size)
{
    return alloc_event_walk(p, size, __atomic_load_n(&g_walk, __ATOMIC_ACQUIRE), 1);
}

/* alloc_event_311 or alloc_event (small: their _small copies, for a block
 * pymalloc served itself), as a tail call. */
HOT void *alloc_event_tail(void *p, size_t size, int small)
{
    if (__builtin_expect(__atomic_load_n(&g_walk, __ATOMIC_ACQUIRE) == WALK_311, 1))
        return small ? alloc_event_311_small(p, size) : alloc_event_311(p, size);
    return small ? alloc_event_small(p, size) : alloc_event(p, size);
}

/* The original allocator runs with the guard set: pymalloc's fallback to
 * malloc for large blocks, and its arenas (mmap), are not counted twice.
 * py_hook_malloc and py_hook_free are the full mode's (sampled mode
 * installs its own; over pymalloc, FAST_HOOKS, below, take their place).
 * py_hook_free keeps the guard set until its event is
 * written; py_hook_malloc clears it first and ends in a jump to its event
 * (alloc_event_tail), whose fast case calls nothing (alloc_event_slow
 * sets the guard again).  The fast paths do not look at g_state: when
 * tracking stops, the finalising watch sends them to the slow ones. */
static __attribute__((noinline)) void *py_hook_malloc_slow(void *ctx, size_t size)
{
    const struct pymem_allocator *o = ctx;
    if (!TRACKING())
        return o->malloc(o->ctx, size);
    busy_set(1);
    void *p = o->malloc(o->ctx, size);
    busy_set(0);
    if (p)
        record_alloc(p, size, 0);
    return p;
}

/* py_hook_malloc's body; w311: the hook of WALK_311, which jumps to
 * alloc_event_311 without looking at g_walk. */
HOT void *hook_malloc(void *ctx, size_t size, int w311)
{
    const struct pymem_allocator *o = ctx;
    struct thread_state *t = gate_state();
    if (__builtin_expect(t == NULL, 0))
        return py_hook_malloc_slow(ctx, size);
    t_tls.gate = (uint64_t)(uintptr_t)t | GATE_BUSY;
    void *p = o->malloc(o->ctx, size);
    t_tls.gate &= ~GATE_BUSY;   /* t need not be kept across the call */
    if (__builtin_expect(p == NULL, 0))
        return NULL;
    return w311 ? alloc_event_311(p, size) : alloc_event_tail(p, size, 0);
}

static void *py_hook_malloc(void *ctx, size_t size)
{
    return hook_malloc(ctx, size, 0);
}

/* Put in py_hook_malloc's place once g_walk is WALK_311 (use_walk). */
static void *py_hook_malloc_311(void *ctx, size_t size)
{
    return hook_malloc(ctx, size, 1);
}

/* The requests pymalloc serves itself (larger ones, and 0, go to the C
 * library's malloc: PyMem_RawMalloc makes 0 one byte; 512 in every
 * version with these hooks). */
#define PYMALLOC_SMALL_MAX 512u

static void *py_hook_calloc(void *ctx, size_t n, size_t size)
{
    const struct pymem_allocator *o = ctx;
    if (!TRACKING())
        return o->calloc(o->ctx, n, size);
    busy_set(1);
    void *p = o->calloc(o->ctx, n, size);
    busy_set(0);
    if (p)
        record_alloc(p, n * size, 0);
    return p;
}

/* A free's event in the common case only (this thread's state and not
 * busy, no shutdown to note and tracking on, room in its window and no
 * other writer since), for a pointer of Python's allocators (FAST_HOOKS,
 * py_hook_realloc): 1 when written, else 0 and nothing written. */
HOT int free_fixed(uint64_t a)
{
    struct thread_state *t = gate_state();
    if (__builtin_expect(t == NULL || *g_fin_watch != 0 || !room_ready(t), 0))
        return 0;
    uint32_t used = t->s.used;
    /* a block of Python's allocators: pymalloc's or the C library's, a
     * multiple of 8 below 2^47 (or NULL); the low bits are cleared anyway,
     * so that a pointer that is no block (a bug of the program's) cannot
     * make the record another kind */
    commit_fixed(t, t->s.win, used, put_free(t, t->s.base + used, a & ~(uint64_t)7));
    return 1;
}

static void py_hook_free(void *ctx, void *ptr)
{
    const struct pymem_allocator *o = ctx;
    if (ptr && TRACKING()) {
        busy_set(1);
        struct thread_state *t = thread_get();
        if (t != NULL)
            write_free(t, (uint64_t)(uintptr_t)ptr);
        o->free(o->ctx, ptr);
        busy_set(0);
        return;
    }
    o->free(o->ctx, ptr);
}

static void *py_hook_malloc_sampled(void *ctx, size_t size);

static void *py_hook_realloc(void *ctx, void *old, size_t size)
{
    const struct pymem_allocator *o = ctx;
    if (!TRACKING())
        return o->realloc(o->ctx, old, size);
    if (old == NULL)
        return g_sample_bytes ? py_hook_malloc_sampled(ctx, size) : py_hook_malloc(ctx, size);
    /* the free first: once moved, the old block may be reused at once */
    if (g_sample_bytes || !free_fixed((uint64_t)(uintptr_t)old))
        record_free(old);
    busy_set(1);
    void *p = o->realloc(o->ctx, old, size);
    busy_set(0);
    if (__builtin_expect(p == NULL, 0))
        return NULL;
    if (g_sample_bytes == 0)
        return alloc_event_tail(p, size, 0);   /* full mode: as py_hook_malloc's */
    record_alloc(p, size, 0);
    return p;
}

/* Full mode over pymalloc (pymalloc_hooks_fit): each domain's own hooks,
 * installed with pymalloc's context (NULL), which call and jump to
 * pymalloc's functions through g_orig directly (two loads fewer than
 * through a context).
 *
 * Allocation: pymalloc's malloc without the guard, then the event as a
 * jump.  No guard: for the requests pymalloc serves itself it calls
 * nothing this library counts (its arenas' hook sets the guard); a larger
 * request (or 0) it hands to the C library's malloc, whose interposer
 * writes the event, with the same Python stack, so the hook writes none.
 * Should pymalloc find no memory for a new arena and fall back to malloc
 * for a small request, both write an allocation of the same block, and
 * the report takes the second for the first.  About 6 instructions fewer
 * an allocation than py_hook_malloc: no guard to set and clear, no
 * context to follow, the gate looked at once (alloc_event_walk).
 *
 * Free: the event, then pymalloc's free as a tail call, without the
 * guard, so the hook needs no stack frame and makes no call of its own
 * (about 14 instructions fewer a free than py_hook_free).  Without the
 * guard, pymalloc's free hands a large block to the C library's free,
 * whose interposer writes that block's FREE a second time: a free of an
 * address no longer live, which the report ignores, written before the
 * block is released, so no reuse of the address comes between the two.  A
 * free of NULL (rare) is written too, as a free of address 0, which is
 * never live.  Anything but the common case (no thread state yet, busy,
 * shutdown to note or tracking stopped, a new block or segment) is
 * py_hook_free's.
 *
 * calloc is malloc's, zeroed (fast_calloc: 192 instructions a calloc to
 * 145 over bench/mem_workload.py's 5 000 a round on Debian's 3.11); realloc
 * is py_hook_realloc's, whose free and allocation events take the fast
 * paths. */
HOT void *fast_malloc(int domain, void *ctx, size_t size, int w311)
{
    void *p = g_orig[domain].malloc(ctx, size);
    if (__builtin_expect(size - 1 >= PYMALLOC_SMALL_MAX || p == NULL, 0))
        return p;
    return w311 ? alloc_event_311_small(p, size) : alloc_event_small(p, size);
}

/* calloc over pymalloc, the same way: pymalloc's calloc unguarded, then
 * the event of a block it served itself (n * size of 1 to 512 bytes; a
 * larger or empty request is the interposed calloc's, as with malloc). */
HOT void *fast_calloc(int domain, void *ctx, size_t n, size_t size)
{
    void *p = g_orig[domain].calloc(ctx, n, size);
    size_t total;
    if (__builtin_expect(__builtin_mul_overflow(n, size, &total) ||
                             total - 1 >= PYMALLOC_SMALL_MAX || p == NULL, 0))
        return p;
    return alloc_event_tail(p, total, 1);
}

#define FAST_HOOKS(NAME, DOMAIN)                                                          \
    static void *NAME##_malloc(void *ctx, size_t size)                                    \
    {                                                                                     \
        return fast_malloc(DOMAIN, ctx, size, 0);                                         \
    }                                                                                     \
    /* in NAME##_malloc's place once g_walk is WALK_311 (use_walk) */                    \
    static void *NAME##_malloc_311(void *ctx, size_t size)                                \
    {                                                                                     \
        return fast_malloc(DOMAIN, ctx, size, 1);                                         \
    }                                                                                     \
    static void *NAME##_calloc(void *ctx, size_t n, size_t size)                          \
    {                                                                                     \
        return fast_calloc(DOMAIN, ctx, n, size);                                         \
    }                                                                                     \
    static void *NAME##_realloc(void *ctx, void *old, size_t size)                        \
    {                                                                                     \
        (void)ctx;                                                                        \
        return py_hook_realloc(&g_orig[DOMAIN], old, size);                               \
    }                                                                                     \
    static void NAME##_free(void *ctx, void *ptr)                                         \
    {                                                                                     \
        if (__builtin_expect(!free_fixed((uint64_t)(uintptr_t)ptr), 0)) {                 \
            py_hook_free(&g_orig[DOMAIN], ptr);                                           \
            return;                                                                       \
        }                                                                                 \
        g_orig[DOMAIN].free(ctx, ptr);                                                    \
    }
FAST_HOOKS(fast_mem, PYMEM_DOMAIN_MEM)
FAST_HOOKS(fast_obj, PYMEM_DOMAIN_OBJ)

/* Each domain's FAST_HOOKS as installed (the context is pymalloc's), and
 * their WALK_311 allocation hooks (use_walk). */
static const struct pymem_allocator g_fast_hooks[3] = {
    [PYMEM_DOMAIN_MEM] = {NULL, fast_mem_malloc, fast_mem_calloc, fast_mem_realloc, fast_mem_free},
    [PYMEM_DOMAIN_OBJ] = {NULL, fast_obj_malloc, fast_obj_calloc, fast_obj_realloc, fast_obj_free},
};
static void *(*const g_fast_malloc_311[3])(void *, size_t) = {
    [PYMEM_DOMAIN_MEM] = fast_mem_malloc_311,
    [PYMEM_DOMAIN_OBJ] = fast_obj_malloc_311,
};

/* Sampled mode's hooks: an allocation is a subtraction, a free of a block
 * never sampled a load; the rest is out of line. */
static void *py_hook_malloc_sampled(void *ctx, size_t size)
{
    const struct pymem_allocator *o = ctx;
    if (!TRACKING())
        return o->malloc(o->ctx, size);
    busy_set(1);
    void *p = o->malloc(o->ctx, size);
    busy_set(0);
    if (p) {
        t_countdown -= (int64_t)size;
        if (__builtin_expect(t_countdown <= 0, 0))
            record_alloc_sampled(p, size);
    }
    return p;
}

static void py_hook_free_sampled(void *ctx, void *ptr)
{
    const struct pymem_allocator *o = ctx;
    /* the free() pymalloc may call for a block asks the same question */
    if (ptr && TRACKING() && __builtin_expect(maybe_sampled((uint64_t)(uintptr_t)ptr), 0)) {
        record_free_sampled(ptr);
        busy_set(1);
        o->free(o->ctx, ptr);
        busy_set(0);
        return;
    }
    o->free(o->ctx, ptr);
}

/* Sampled mode over pymalloc ("direct" hooks): the domain's free is
 * pymalloc's own, unwrapped, and an allocation is pymalloc's plus a
 * subtraction.  A small block (pymalloc serves up to SMALL_REQUEST_THRESHOLD,
 * 512 bytes, in every version with these hooks) that the countdown picks is
 * given back to pymalloc and replaced with a block of the C library's
 * malloc: Python frees it with PyObject_Free / PyMem_Free, whose pymalloc
 * finds it outside its arenas and hands it to free(), where this library
 * sees it (the interposed free checks sampled blocks).  Larger requests go
 * from pymalloc to malloc, whose interposer counts them: the hook does not.
 * Used only where the original allocator has no context (pymalloc or the
 * raw malloc, never the debug hooks) and PYTHONMALLOC does not pick another
 * allocator; elsewhere the wrapping hooks above. */
enum { HIT_MALLOC, HIT_CALLOC, HIT_REALLOC };

static __attribute__((noinline)) void *sampled_small_hit(int domain, void *p, size_t size,
                                                         int how)
{
    if (!TRACKING())
        return p;
    uint64_t w = sample_hit(size);
    if (w == 0)
        return p;
    busy_set(1);
    /* a larger block (realloc's) is the C library's already */
    void *q = size > PYMALLOC_SMALL_MAX ? p
              : how == HIT_CALLOC       ? __libc_calloc(1, size ? size : 1)
                                        : __libc_malloc(size ? size : 1);
    if (q != NULL) {
        if (q != p) {
            if (how == HIT_REALLOC)
                memcpy(q, p, size);
            /* pymalloc's free takes its own blocks and the C library's */
            g_orig[domain].free(g_orig[domain].ctx, p);
        }
        write_sampled_alloc(q, w);
        p = q;
    }
    busy_set(0);
    return p;
}

/* Whether the countdown runs out at a request of size bytes, counted down
 * before the block is made: one subtraction, for the requests pymalloc
 * serves (larger ones it hands to the C library's malloc, whose interposer
 * counts them).  A request pymalloc then refuses (no memory) was counted
 * all the same: rare, and a shift of the sampling points only. */
HOT int direct_due(size_t size)
{
    if (size > PYMALLOC_SMALL_MAX)
        return 0;
    int64_t c = t_countdown - (int64_t)size;
    t_countdown = c;
    return __builtin_expect(c <= 0, 0);
}

/* The countdown ran out at this request: make the block, then sample it. */
static __attribute__((noinline)) void *direct_due_alloc(int domain, void *ctx, size_t n,
                                                        size_t size, int how)
{
    void *p = how == HIT_CALLOC ? g_orig[domain].calloc(ctx, n, size)
                                : g_orig[domain].malloc(ctx, size);
    /* pymalloc refused an overflow or had no memory: p is NULL */
    return p ? sampled_small_hit(domain, p, how == HIT_CALLOC ? n * size : size, how) : NULL;
}

/* The hooks: malloc and calloc count down first and end in a jump to
 * pymalloc's own (no stack frame, no call: about 7 instructions an
 * allocation fewer than counting down after the call) unless the countdown
 * ran out.  calloc's product cannot overflow to a small size unnoticed:
 * pymalloc refuses an overflowing request, and direct_due only counts
 * products up to 512. */
#define DIRECT_HOOKS(NAME, DOMAIN)                                                        \
    static void *NAME##_malloc(void *ctx, size_t size)                                    \
    {                                                                                     \
        if (direct_due(size))                                                             \
            return direct_due_alloc(DOMAIN, ctx, 1, size, HIT_MALLOC);                   \
        return g_orig[DOMAIN].malloc(ctx, size);                                          \
    }                                                                                     \
    static void *NAME##_calloc(void *ctx, size_t n, size_t size)                          \
    {                                                                                     \
        size_t bytes;                                                                     \
        if (!__builtin_mul_overflow(n, size, &bytes) && direct_due(bytes))              \
            return direct_due_alloc(DOMAIN, ctx, n, size, HIT_CALLOC);                   \
        return g_orig[DOMAIN].calloc(ctx, n, size);                                       \
    }                                                                                     \
    /* a sampled old block is freed; the new one is counted whatever its size    \
     * (the guard keeps the C library's realloc from counting it again) */              \
    static void *NAME##_realloc(void *ctx, void *old, size_t size)                        \
    {                                                                                     \
        if (old == NULL)                                                                  \
            return NAME##_malloc(ctx, size);                                              \
        if (!TRACKING())                                                                  \
            return g_orig[DOMAIN].realloc(ctx, old, size);                                \
        record_free(old);                                                                 \
        busy_set(1);                                                                      \
        void *p = g_orig[DOMAIN].realloc(ctx, old, size);                                 \
        busy_set(0);                                                                      \
        t_countdown -= (int64_t)size;                                                     \
        if (__builtin_expect(t_countdown <= 0, 0) && p)                                   \
            return sampled_small_hit(DOMAIN, p, size, HIT_REALLOC);                       \
        return p;                                                                         \
    }
DIRECT_HOOKS(direct_mem, PYMEM_DOMAIN_MEM)
DIRECT_HOOKS(direct_obj, PYMEM_DOMAIN_OBJ)

/* Each domain's DIRECT_HOOKS as installed; the free is pymalloc's own. */
static const struct pymem_allocator g_direct_hooks[3] = {
    [PYMEM_DOMAIN_MEM] = {NULL, direct_mem_malloc, direct_mem_calloc, direct_mem_realloc, NULL},
    [PYMEM_DOMAIN_OBJ] = {NULL, direct_obj_malloc, direct_obj_calloc, direct_obj_realloc, NULL},
};

/* Whether this domain's allocator is pymalloc: no context (the debug hooks
 * have one) and PYTHONMALLOC picks no other.  (A Python built without
 * pymalloc passes too: FAST_HOOKS then write every small allocation and
 * every free twice, once through the interposed malloc and free, which
 * costs, but counts right: the report takes a second allocation of a live
 * block for the first, and ignores a free of a block not live.) */
static int pymalloc_hooks_fit(const struct pymem_allocator *orig)
{
    const char *m = getenv("PYTHONMALLOC");
    return orig->ctx == NULL && (m == NULL || strcmp(m, "pymalloc") == 0);
}

/* Whether sampled mode may use the direct hooks over this allocator. */
static int direct_hooks_fit(const struct pymem_allocator *orig)
{
    return g_sample_bytes != 0 && pymalloc_hooks_fit(orig);
}

static int is_our_malloc_hook(void *(*f)(void *, size_t))
{
    if (f == py_hook_malloc || f == py_hook_malloc_311 || f == py_hook_malloc_sampled)
        return 1;
    for (int d = PYMEM_DOMAIN_MEM; d <= PYMEM_DOMAIN_OBJ; d++)
        if (f == g_fast_hooks[d].malloc || f == g_fast_malloc_311[d] ||
            f == g_direct_hooks[d].malloc)
            return 1;
    return 0;
}

/* PyObjectArenaAllocator (3.4+): pymalloc's arenas, and 3.11+'s frame
 * stack chunks.  Wrapped so that they are never counted: pymalloc's are
 * already inside a tracked allocation (the guard is set) except between
 * Py_Main's resetting of the allocators and check_python_hooks (3.6/3.7,
 * PYTHONMALLOC), where they would be counted once as a mapping and again
 * as the objects later put in them. */
struct arena_allocator {
    void *ctx;
    void *(*alloc)(void *ctx, size_t size);
    void (*free)(void *ctx, void *ptr, size_t size);
};
static void (*g_get_arena)(struct arena_allocator *a);
static void (*g_set_arena)(struct arena_allocator *a);
static struct arena_allocator g_orig_arena;

static void *arena_hook_alloc(void *ctx, size_t size)
{
    (void)ctx;
    int busy = busy_get();
    busy_set(1);
    void *p = g_orig_arena.alloc(g_orig_arena.ctx, size);
    busy_set(busy);
    return p;
}

static void arena_hook_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    int busy = busy_get();
    busy_set(1);
    g_orig_arena.free(g_orig_arena.ctx, ptr, size);
    busy_set(busy);
}

/* Code objects' deallocator, wrapped (PyCode_Type's tp_dealloc, from the
 * constructor on): a code object going away makes the stack keys made
 * with its address stale, so g_code_gen moves on, and so does its slot's
 * count of deaths (intern_code).  Every code object dies
 * there (the type has no subclasses), also those the allocator hooks do
 * not see (2.7, PYTHONMALLOC=malloc, sampled mode), and the hooks' frees
 * need not look at each block's type. */
static void (*g_code_dealloc)(void *);

static void code_dealloc_hook(void *op)
{
    __atomic_add_fetch(&g_code_gen, 0x9e3779b97f4a7c15ULL, __ATOMIC_RELAXED);
    __atomic_add_fetch(&g_code_deaths[code_death_slot((uint64_t)(uintptr_t)op)], 1,
                       __ATOMIC_RELAXED);
    g_code_dealloc(op);
}

static void wrap_code_dealloc(void)
{
    /* tp_dealloc follows tp_name, tp_basicsize and tp_itemsize in every
     * version's PyTypeObject */
    if (g_code_type == 0 || g_layout.type_name < 0)
        return;
    void (**slot)(void *) =
        (void (**)(void *))(uintptr_t)(g_code_type + (uint64_t)g_layout.type_name + 24);
    if (*slot == NULL || *slot == code_dealloc_hook)
        return;
    g_code_dealloc = *slot;
    *slot = code_dealloc_hook;
    g_code_frees_seen = 1;
}

/* Wrap the MEM and OBJ domains (and, once, the arena allocator). */
static void install_python_hooks(void)
{
    if (g_get_arena && g_set_arena && g_orig_arena.alloc == NULL) {
        g_get_arena(&g_orig_arena);
        struct arena_allocator hook = {NULL, arena_hook_alloc, arena_hook_free};
        g_set_arena(&hook);
    }
    for (int d = PYMEM_DOMAIN_MEM; d <= PYMEM_DOMAIN_OBJ; d++) {
        g_get_allocator(d, &g_orig[d]);
        struct pymem_allocator hook = {&g_orig[d], py_hook_malloc, py_hook_calloc,
                                       py_hook_realloc, py_hook_free};
        /* the direct and fast hooks take pymalloc's context, which both
         * fit tests require to be NULL, as in their tables */
        if (direct_hooks_fit(&g_orig[d])) {
            hook = g_direct_hooks[d];
            hook.free = g_orig[d].free;
        } else if (g_sample_bytes) {
            hook.malloc = py_hook_malloc_sampled;
            hook.free = py_hook_free_sampled;
        } else if (pymalloc_hooks_fit(&g_orig[d])) {
            hook = g_fast_hooks[d];
        }
        g_set_allocator(d, &hook);
    }
    g_hooks_installed = 1;
}

/* The walk stack_id is to take (for g_walk), with g_wo filled in for it:
 * a straight walk where code-object frees are seen (wrap_code_dealloc)
 * and the GIL holder can be found (lock held).  3.14's frames hold tagged
 * references and another owner numbering: stack_id_slow's. */
static int choose_walk(void)
{
    const struct py_layout *l = &g_layout;
    if (!g_code_frees_seen || !g_gil_holder || g_native || l->major != 3 || l->minor > 13 ||
        l->tstate_thread_id < 0 || l->tstate_frame < 0)
        return WALK_SLOW;
    g_wo.thread_id = (uint64_t)l->tstate_thread_id;
    g_wo.frame = (uint64_t)l->tstate_frame;
    if (l->frames == PY_FRAMES_OBJECT) {
        if (l->frame_code < 0 || l->frame_lasti < 0 || l->frame_back < 0)
            return WALK_SLOW;
        g_wo.code = (uint64_t)l->frame_code;
        g_wo.pos = (uint64_t)l->frame_lasti;
        g_wo.prev = (uint64_t)l->frame_back;
        return WALK_OBJECT;
    }
    if (l->iframe_code < 0 || l->iframe_instr < 0 || l->iframe_previous < 0 ||
        (l->frames == PY_FRAMES_CFRAME && l->cframe_current_frame < 0))
        return WALK_SLOW;
    g_wo.code = (uint64_t)l->iframe_code;
    g_wo.pos = (uint64_t)l->iframe_instr;
    g_wo.prev = (uint64_t)l->iframe_previous;
    g_wo.via_cframe = l->frames == PY_FRAMES_CFRAME;
    g_wo.cframe = g_wo.via_cframe ? (uint64_t)l->cframe_current_frame : 0;
    if (l->minor >= 12)
        return WALK_SHIMS;
    if (l->tstate_thread_id == W311_TSTATE_THREAD_ID && l->tstate_frame == W311_TSTATE_FRAME &&
        l->cframe_current_frame == W311_CFRAME_CURRENT_FRAME && l->iframe_code == W311_IFRAME_CODE &&
        l->iframe_instr == W311_IFRAME_INSTR && l->iframe_previous == W311_IFRAME_PREVIOUS)
        return WALK_311;
    return WALK_IFRAME;
}

/* Set g_walk (lock held, with the GIL: no allocation of the MEM and OBJ
 * domains runs), and with WALK_311 put the WALK_311 allocation hooks
 * (py_hook_malloc_311, g_fast_malloc_311) in place. */
static void use_walk(int walk)
{
    /* g_wo before g_walk: stack_id reads them without the lock */
    __atomic_store_n(&g_walk, walk, __ATOMIC_RELEASE);
    if (walk != WALK_311)
        return;
    for (int d = PYMEM_DOMAIN_MEM; d <= PYMEM_DOMAIN_OBJ; d++) {
        struct pymem_allocator a;
        g_get_allocator(d, &a);
        void *(*w311)(void *, size_t) = a.malloc == py_hook_malloc          ? py_hook_malloc_311
                                        : a.malloc == g_fast_hooks[d].malloc ? g_fast_malloc_311[d]
                                                                             : NULL;
        if (w311) {
            a.malloc = w311;
            g_set_allocator(d, &a);
        }
    }
}

/* Once the interpreter runs Python code (a thread state with a frame),
 * check that the hooks set by the constructor are still there: PYTHONMALLOC,
 * -X dev, and 3.6/3.7's Py_Main (always) set the allocators up again after
 * it.  If so, install them again now (code objects freed in between were
 * seen all the same: wrap_code_dealloc); then pick the walk.  Called with
 * the guard set, from an allocation outside CPython's allocator code (the only
 * place where 3.12+ hold the allocators' mutex, which never allocates). */
static __attribute__((noinline)) void check_python_hooks(void)
{
    if (!g_py || !g_hooks_installed || g_tstate_current) {
        g_hooks_checked = 1;
        return;
    }
    uint64_t ts = (uint64_t)(uintptr_t)g_this_tstate();
    if (ts == 0 || load64(ts + (uint64_t)g_layout.tstate_frame) == 0)
        return;   /* not yet */
    lock();
    if (!g_hooks_checked) {
        const struct py_layout *l = &g_layout;
        if (g_runtime && l->runtime_gil_last_holder != PY_OFF_NONE) {
            g_gil_holder = g_runtime + (uint64_t)l->runtime_gil_last_holder;
        } else if (g_runtime && l->runtime_interpreters_head != PY_OFF_NONE &&
                   l->interp_gil_ptr != PY_OFF_NONE && l->gil_last_holder != PY_OFF_NONE) {
            uint64_t interp = load64(g_runtime + (uint64_t)l->runtime_interpreters_head);
            uint64_t gil = interp ? load64(interp + (uint64_t)l->interp_gil_ptr) : 0;
            if (gil)
                g_gil_holder = gil + (uint64_t)l->gil_last_holder;
        }
        struct pymem_allocator cur;
        g_get_allocator(PYMEM_DOMAIN_OBJ, &cur);
        if (!is_our_malloc_hook(cur.malloc))
            install_python_hooks();
        use_walk(choose_walk());
        g_hooks_checked = 1;
    }
    unlock();
}

/* ---- the interposed functions -------------------------------------------- */

EXPORT void *malloc(size_t size)
{
    void *p = __libc_malloc(size);
    if (p && TRACKING())
        record_alloc(p, size, 0);
    return p;
}

EXPORT void free(void *p)
{
    if (p && TRACKING())
        record_free(p);
    __libc_free(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
    void *p = __libc_calloc(n, size);
    if (p && TRACKING())
        record_alloc(p, n * size, 0);
    return p;
}

EXPORT void *realloc(void *old, size_t size)
{
    if (!TRACKING())
        return __libc_realloc(old, size);
    if (old == NULL)
        return malloc(size);
    if (size == 0) {
        free(old);
        return NULL;
    }
    /* the free first: once moved, the old block may be reused at once by
     * another thread, whose allocation must come after it */
    record_free(old);
    void *p = __libc_realloc(old, size);
    if (p)
        record_alloc(p, size, 0);
    else if (!g_sample_bytes)
        record_alloc(old, malloc_usable_size(old), 0);   /* failed: old is still there */
    return p;
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(align, size);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    if (TRACKING())
        record_alloc(p, size, 0);
    return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t size)
{
    void *p = __libc_memalign(align, size);
    if (p && TRACKING())
        record_alloc(p, size, 0);
    return p;
}

EXPORT void *memalign(size_t align, size_t size)
{
    void *p = __libc_memalign(align, size);
    if (p && TRACKING())
        record_alloc(p, size, 0);
    return p;
}

EXPORT void *valloc(size_t size)
{
    void *p = __libc_memalign((size_t)sysconf(_SC_PAGESIZE), size);
    if (p && TRACKING())
        record_alloc(p, size, 0);
    return p;
}

EXPORT void *pvalloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t rounded = (size + page - 1) & ~(page - 1);
    void *p = __libc_memalign(page, rounded ? rounded : page);
    if (p && TRACKING())
        record_alloc(p, rounded, 0);
    return p;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return MAP_FAILED;
    }
    /* anonymous memory only: a mapped file is not heap */
    if ((flags & MAP_ANONYMOUS) && TRACKING())
        record_alloc((void *)r, len, 1);
    return (void *)r;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
    if (TRACKING())
        record_munmap(addr, len);
    long r = syscall(SYS_munmap, addr, len);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return 0;
}

/* ---- start, fork, exit ---------------------------------------------------- */

static int parse_version(const char *s, int *major, int *minor)
{
    *major = *minor = 0;
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -1;
    while (*s >= '0' && *s <= '9')
        *major = *major * 10 + (*s++ - '0');
    if (*s++ != '.')
        return -1;
    while (*s >= '0' && *s <= '9')
        *minor = *minor * 10 + (*s++ - '0');
    return 0;
}

static char g_pyversion[64];
static char g_note[512];

/* Find the interpreter in our own process; leaves g_py 0 with a note when
 * there is none or it is not supported. */
static void find_python(void)
{
    const char *(*get_version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
    g_this_tstate = (void *(*)(void))dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
    g_code_type = (uint64_t)(uintptr_t)dlsym(RTLD_DEFAULT, "PyCode_Type");
    if (get_version == NULL || g_this_tstate == NULL || g_code_type == 0) {
        snprintf(g_note, sizeof g_note,
                 "not a Python program (no CPython interpreter in the process): native "
                 "allocations only, with C stacks");
        return;
    }
    const char *v = get_version();
    size_t n = 0;
    while (v[n] && v[n] != ' ' && n + 1 < sizeof g_pyversion) {
        g_pyversion[n] = v[n];
        n++;
    }
    g_pyversion[n] = '\0';
    int major, minor;
    if (parse_version(g_pyversion, &major, &minor) != 0) {
        snprintf(g_note, sizeof g_note, "unrecognised Python version '%s': native allocations only",
                 g_pyversion);
        return;
    }
    g_runtime = (uint64_t)(uintptr_t)dlsym(RTLD_DEFAULT, "_PyRuntime");
    if (major == 3 && minor == 13) {
        if (g_runtime == 0) {
            snprintf(g_note, sizeof g_note, "Python %s: no _PyRuntime; native allocations only",
                     g_pyversion);
            return;
        }
        uint64_t hex = ((uint64_t)major << 24) | ((uint64_t)minor << 16);
        if (debug_offsets_parse((const uint8_t *)(uintptr_t)g_runtime, DEBUG_OFFSETS_MAX_SIZE, hex,
                                &g_layout, NULL) != 0) {
            snprintf(g_note, sizeof g_note,
                     "Python %s: _Py_DebugOffsets not usable; native allocations only", g_pyversion);
            return;
        }
    } else {
        const struct py_layout *l = py_layout_for(major, minor);
        if (l == NULL) {
            snprintf(g_note, sizeof g_note,
                     "Python %s is not supported for Python stacks (2.7, 3.6-3.13 are): native "
                     "allocations only", g_pyversion);
            return;
        }
        g_layout = *l;
    }
    g_self_reader.ops = &self_ops;
    g_objects.reader = &g_self_reader;
    g_objects.layout = &g_layout;
    g_objects.unicode_type = (uint64_t)(uintptr_t)dlsym(RTLD_DEFAULT, "PyUnicode_Type");
    g_objects.bytes_type = (uint64_t)(uintptr_t)dlsym(RTLD_DEFAULT, "PyBytes_Type");
    g_objects.string_type = (uint64_t)(uintptr_t)dlsym(RTLD_DEFAULT, "PyString_Type");
    if (major == 2) {
        g_objects.bytes_type = g_objects.string_type;
        g_tstate_current = (uint64_t)(uintptr_t)dlsym(RTLD_DEFAULT, "_PyThreadState_Current");
        if (g_tstate_current == 0) {
            snprintf(g_note, sizeof g_note, "Python %s: no _PyThreadState_Current; native "
                     "allocations only", g_pyversion);
            return;
        }
    }
    /* native frames stop at the eval loop: Python frames take over there */
    const char *eval = major >= 3 && minor >= 6 ? "_PyEval_EvalFrameDefault" : "PyEval_EvalFrameEx";
    void *fn = dlsym(RTLD_DEFAULT, eval);
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (fn && dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym) {
        g_eval_start = (uint64_t)(uintptr_t)fn;
        g_eval_end = g_eval_start + sym->st_size;
    }
    if (g_runtime && g_layout.runtime_finalizing != PY_OFF_NONE)
        g_finalizing = g_runtime + (uint64_t)g_layout.runtime_finalizing;
    else
        g_finalizing = (uint64_t)(uintptr_t)dlsym(RTLD_DEFAULT, "_Py_Finalizing");
    if (major == 3 && minor >= 6) {
        g_get_allocator = (void (*)(int, struct pymem_allocator *))dlsym(RTLD_DEFAULT,
                                                                          "PyMem_GetAllocator");
        g_set_allocator = (void (*)(int, struct pymem_allocator *))dlsym(RTLD_DEFAULT,
                                                                          "PyMem_SetAllocator");
        g_get_arena = (void (*)(struct arena_allocator *))dlsym(RTLD_DEFAULT,
                                                                 "PyObject_GetArenaAllocator");
        g_set_arena = (void (*)(struct arena_allocator *))dlsym(RTLD_DEFAULT,
                                                                 "PyObject_SetArenaAllocator");
    }
    if (g_finalizing == 0)
        g_is_initialized = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    g_py = 1;
}

static void find_self(void)
{
    Dl_info info;
    if (dladdr((void *)(uintptr_t)find_self, &info) && info.dli_fbase) {
        struct link_map *lm = NULL;
        if (dladdr1((void *)(uintptr_t)find_self, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm) {
            /* the library's extent: from its base to the end of its last segment */
            const ElfW(Ehdr) *eh = info.dli_fbase;
            const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
            uint64_t end = 0;
            for (int i = 0; i < eh->e_phnum; i++)
                if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr + ph[i].p_memsz > end)
                    end = ph[i].p_vaddr + ph[i].p_memsz;
            g_self_start = (uint64_t)(uintptr_t)info.dli_fbase;
            g_self_end = lm->l_addr + end;
        }
    }
}

static void u64_text(uint64_t v, char *out)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

static void write_preamble(void)
{
    char num[24];
    u64_text((uint64_t)getpid(), num);
    emit_meta("pid", num);
    u64_text((uint64_t)getppid(), num);
    emit_meta("ppid", num);
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    emit_meta("exe", exe);
    /* the command line, NULs turned into spaces */
    char cmd[CAPTURE_STR_MAX];
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    long len = fd >= 0 ? syscall(SYS_read, fd, cmd, sizeof cmd - 1) : 0;
    if (fd >= 0)
        syscall(SYS_close, fd);
    if (len < 0)
        len = 0;
    for (long i = 0; i < len; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    while (len > 0 && cmd[len - 1] == ' ')
        len--;
    cmd[len] = '\0';
    emit_meta("command", cmd);
    if (g_py) {
        emit_meta("python", g_pyversion);
        u64_text((uint64_t)g_layout.lines, num);
        emit_meta("linetable", num);
    }
    u64_text(g_sample_bytes, num);
    emit_meta("sample_bytes", num);
    emit_meta("native", g_native ? "1" : "0");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    u64_text((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, num);
    emit_meta("start_unix_ns", num);
    if (g_note[0])
        emit_note(g_note);
    uint8_t rec[24];
    size_t k = 0;
    rec[k++] = CAPTURE_TIME;
    k += capture_put_u(rec + k, 0);
    k += capture_put_u(rec + k, read_rss());
    emit(rec, k);
}

static int open_capture(int child)
{
    char path[4200];
    if (child) {
        char num[24];
        u64_text((uint64_t)getpid(), num);
        snprintf(path, sizeof path, "%s.%s", g_path, num);
    } else {
        snprintf(path, sizeof path, "%s", g_path);
    }
    uint32_t flags = (g_sample_bytes ? CAPTURE_F_SAMPLED : 0) | (g_native ? CAPTURE_F_NATIVE : 0) |
                     (g_py ? CAPTURE_F_PYTHON : 0);
    if (capture_writer_open(&g_w, path, flags) != 0)
        return -1;
    g_t0_ns = g_last_time_ns = now_ns();
    g_owner = 0;
    g_saw_finalizing = 0;
    g_fin_watch = g_finalizing      ? (const volatile uint64_t *)(uintptr_t)g_finalizing
                  : g_is_initialized ? &g_one
                                     : &g_zero;   /* a child's, after a stop in the parent too */
    write_preamble();
    return 0;
}

static void reset_tables(void)
{
    table_reset(&g_strings);
    table_reset(&g_codes);
    table_reset(&g_frames);
    table_reset(&g_nodes);
    table_reset(&g_chains);
    table_reset(&g_sampled);
    memset(g_maybe_sampled, 0, sizeof g_maybe_sampled);
    g_nstrings = g_ncodes = g_nframes = g_nstacks = 0;
}

/* A thread exits (its key's destructor): seal its block and keep its
 * state for a new thread.  The first rounds only ask to be called again,
 * so that other keys' destructors, which may still free memory, run
 * before. */
static void thread_exit(void *arg)
{
    struct thread_state *t = arg;
    if (t == NULL || t != st_get())
        return;
    if (++t->rounds < PTHREAD_DESTRUCTOR_ITERATIONS) {
        pthread_setspecific(g_key, t);
        return;
    }
    int busy = busy_get();
    busy_set(1);
    st_set(NULL);   /* before another thread can take the state */
    lock();
    for (struct thread_state **pp = &g_threads; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    if (g_state == ST_ON)
        capture_stream_seal(&g_w, &t->s);
    else
        capture_stream_abandon(&t->s);
    t->next = g_spare;
    g_spare = t;
    unlock();
    busy_set(busy);
}

static void before_fork(void)
{
    lock();
}

static void after_fork_parent(void)
{
    unlock();
}

static void after_fork_child(void)
{
    /* this thread is the only one left; the lock is ours.  Every state
     * (this thread's too) writes into the parent's file: drop them all. */
    busy_set(1);
    if (g_state == ST_ON || g_w.fd >= 0) {
        for (struct thread_state *t = g_threads, *next; t; t = next) {
            next = t->next;
            capture_stream_abandon(&t->s);
            raw_unmap(t, sizeof *t);
        }
        for (struct thread_state *t = g_spare, *next; t; t = next) {
            next = t->next;
            raw_unmap(t, sizeof *t);
        }
        g_threads = g_spare = NULL;
        if (g_slots)
            memset(g_slots, 0, g_nslots * sizeof *g_slots);
        g_nslots = 0;
        g_noted_untracked = 0;
        st_set(NULL);
        if (g_key_ok)
            pthread_setspecific(g_key, NULL);
        capture_writer_abandon(&g_w);
        reset_tables();
        g_next_thread = 1;
        if (open_capture(1) == 0)
            g_state = ST_ON;
        else
            stop_tracking();
    }
    busy_set(0);
    unlock();
}

__attribute__((constructor)) static void tracker_start(void)
{
    busy_set(1);
    const char *out = getenv("PYROMETER_MEM_OUT");
    if (out == NULL || out[0] == '\0' || strlen(out) >= sizeof g_path) {
        busy_set(0);
        return;
    }
    snprintf(g_path, sizeof g_path, "%s", out);
    const char *sample = getenv("PYROMETER_MEM_SAMPLE");
    g_sample_bytes = sample ? strtoull(sample, NULL, 10) : 0;
    const char *native = getenv("PYROMETER_MEM_NATIVE");
    g_native = native && native[0] == '1';
    const char *pyalloc = getenv("PYROMETER_MEM_PYALLOC");
    g_use_setallocator = !(pyalloc && strcmp(pyalloc, "malloc") == 0);
    const char *max_threads = getenv("PYROMETER_MEM_TEST_MAX_THREADS");
    unsigned long max = max_threads ? strtoul(max_threads, NULL, 10) : 0;
    if (max - 1 < MAX_SLOTS)   /* 1 to MAX_SLOTS */
        g_max_slots = (uint32_t)max;
    const char *parent = getenv("PYROMETER_MEM_PARENT");
    int child = !(parent && (pid_t)strtol(parent, NULL, 10) == getppid());
    find_python();
    find_self();
    if (!g_py)
        g_native = 1;   /* without Python, C frames are all there is to attribute to */
    g_w.fd = -1;
    if (open_capture(child) != 0) {
        busy_set(0);
        return;
    }
    g_key_ok = pthread_key_create(&g_key, thread_exit) == 0;
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    /* Python's allocators are wrapped here, before main: no thread runs,
     * no allocator mutex exists yet (3.12 creates its lock in Py_Initialize
     * and PyMem_SetAllocator skips it while it is NULL; 3.13's is a static
     * PyMutex), and every object and every pymalloc arena is made through
     * the hooks, so none is counted twice.  check_python_hooks() looks
     * again once Python code runs. */
    if (g_py)
        wrap_code_dealloc();
    if (g_py && g_use_setallocator && g_get_allocator && g_set_allocator)
        install_python_hooks();
    g_state = ST_ON;
    busy_set(0);
}

__attribute__((destructor)) static void tracker_stop(void)
{
    if (g_state == ST_OFF)
        return;
    busy_set(1);
    struct thread_state *t = st_get();
    if (g_state == ST_ON && t) {
        uint8_t *p = event_room(t);
        if (p)
            capture_stream_commit(&t->s, time_record(p, 1));
    }
    lock();
    if (g_state == ST_ON) {
        uint8_t rec[16];
        rec[0] = CAPTURE_END;
        emit(rec, 1 + capture_put_u(rec + 1, g_w.end));
    }
    stop_tracking();
    /* this thread's block and stream 0 are sealed; other threads may still
     * be writing into their windows, which stay mapped and are read with their blocks */
    capture_writer_close(&g_w, t ? &t->s : NULL);
    if (t)
        __atomic_store_n(&t->limit, -1, __ATOMIC_RELAXED);
    unlock();
    busy_set(0);
}
