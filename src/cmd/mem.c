/*
 * mem.c — `pyrometer mem run` and `pyrometer mem report`.
 *
 * run: launches the program with the allocation tracker preloaded
 * (libpyrometer-mem.so, found beside the binary in a build tree or in
 * PREFIX/lib/pyrometer after `make install`, or at $PYROMETER_MEM_LIB), with
 * PYTHONMALLOC=malloc so Python's object allocations reach it, waits for it
 * (Ctrl-C is passed on), then replays the capture for a one-line summary and
 * lists the captures of child processes (CAPTURE.PID).
 *
 * report: replays a capture (mem/replay.h) and shows one view — --peak
 * (default), --leaks, --allocs — as a terminal table of the top locations, or
 * as a flame graph / speedscope / collapsed file through the profile
 * renderers (the byte counts take the place of samples); --temporal writes
 * the heap/RSS chart (render/memchart.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../mem/replay.h"
#include "../profile/profile.h"
#include "../render/memchart.h"
#include "../render/render.h"
#include "../sample/filenames.h"
#include "../target/launch.h"
#include "cmd.h"

#define TRACKER_NAME "libpyrometer-mem.so"
#define TABLE_ROWS_DEFAULT 20

/* ---- shared ---------------------------------------------------------------- */

static void mem_usage(FILE *out)
{
    fprintf(out,
            "usage: pyrometer mem run [-o CAPTURE] [--native] [--sample BYTES] -- COMMAND [ARG...]\n"
            "       pyrometer mem report CAPTURE [--peak | --leaks | --allocs | --temporal]\n"
            "                            [-f flamegraph|speedscope|raw] [-o FILE] [-l ROWS]\n\n"
            "run: starts COMMAND with an allocation tracker loaded into it and records\n"
            "every allocation (malloc and friends, mmap, Python's objects) with the Python\n"
            "stack that made it into CAPTURE (default pyrometer-mem-PID-TIME.cap).  Child\n"
            "processes write CAPTURE.PID.\n"
            "  -o, --output CAPTURE   where to write the capture\n"
            "  -n, --native           also record C frames (slower)\n"
            "  -s, --sample BYTES     sample about one allocation per BYTES allocated\n"
            "                         (Poisson by volume; totals stay unbiased)\n\n"
            "report: what the capture says, by allocating stack.\n"
            "      --peak             what was held at the high-water mark (default)\n"
            "      --leaks            what was still held when the program finished\n"
            "      --allocs           everything allocated (bytes and count)\n"
            "      --temporal         heap and RSS over time as an HTML page (-o FILE)\n"
            "  -f, --format FORMAT    flamegraph (SVG), speedscope or raw (collapsed,\n"
            "                         one line per stack with its bytes); written to -o\n"
            "  -o, --output FILE      output file (default: a table on the terminal, or\n"
            "                         pyrometer-mem-VIEW.EXT with -f)\n"
            "  -l, --limit ROWS       rows in the table (default %d)\n"
            "      --full-filenames   full paths in labels\n"
            "  -h, --help             this text\n", TABLE_ROWS_DEFAULT);
}

static int is_regular(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The tracker library: $PYROMETER_MEM_LIB, beside the binary (build tree),
 * or ../lib/pyrometer/ from it (installed). */
static int find_tracker(char *out, size_t cap, struct pm_error *err)
{
    const char *env = getenv("PYROMETER_MEM_LIB");
    if (env && env[0]) {
        if (!is_regular(env))
            return pm_fail(err, PM_EINTERNAL, "PYROMETER_MEM_LIB=%s: no such file", env);
        if (realpath(env, out) == NULL)
            snprintf(out, cap, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return pm_fail(err, PM_EINTERNAL, "cannot find my own executable: %s", strerror(errno));
    exe[n] = '\0';
    char *dir = dirname(exe);
    char candidate[PATH_MAX + 64];
    snprintf(candidate, sizeof candidate, "%s/%s", dir, TRACKER_NAME);
    if (is_regular(candidate) && strlen(candidate) < cap) {
        memcpy(out, candidate, strlen(candidate) + 1);
        return 0;
    }
    char second[PATH_MAX + 64];
    snprintf(second, sizeof second, "%s/../lib/pyrometer/%s", dir, TRACKER_NAME);
    if (is_regular(second) && realpath(second, out) != NULL)
        return 0;
    return pm_fail(err, PM_EINTERNAL,
                   "the allocation tracker %s was not found (looked at %s and %s; set "
                   "PYROMETER_MEM_LIB, or run `make install`)",
                   TRACKER_NAME, candidate, second);
}

static void progress_line(double fraction, int pass, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "\rpyrometer: reading the capture, pass %d/2: %3.0f%%", pass,
            fraction * 100.0);
    fflush(stderr);
}

/* Replay with progress on a terminal. */
static int replay_with_progress(const char *path, struct replay *r, struct pm_error *err)
{
    int tty = isatty(STDERR_FILENO);
    int rc = replay_run(path, r, tty ? progress_line : NULL, NULL, err);
    if (tty) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    return rc;
}

/* ---- run --------------------------------------------------------------------- */

struct run_opts {
    const char *output;
    int native;
    uint64_t sample;
    char **command;
};

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 1) || v > 1e15)
        return -1;
    if (*end == 'k' || *end == 'K')
        v *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        v *= 1024.0 * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_run_args(int argc, char **argv, struct run_opts *o)
{
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'}, {"native", no_argument, 0, 'n'},
        {"sample", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+o:ns:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o->output = optarg; break;
        case 'n': o->native = 1; break;
        case 's':
            if (parse_size(optarg, &o->sample) != 0)
                return cmd_usage_error("mem run", "invalid --sample '%s' (bytes, e.g. 512K)",
                                       optarg);
            break;
        case 'h': mem_usage(stdout); return -2;
        default:
            return cmd_usage_error("mem run", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cmd_usage_error("mem run", "nothing to run: give -- COMMAND");
    o->command = argv + optind;
    return 0;
}

/* Prepend the tracker to LD_PRELOAD and set what it reads. */
static int set_tracker_env(const char *lib, const char *capture, const struct run_opts *o)
{
    const char *old = getenv("LD_PRELOAD");
    size_t n = strlen(lib) + (old ? strlen(old) : 0) + 2;
    char *preload = malloc(n);
    if (preload == NULL)
        return -1;
    snprintf(preload, n, "%s%s%s", lib, old && old[0] ? " " : "", old ? old : "");
    char num[32];
    int rc = setenv("LD_PRELOAD", preload, 1);
    free(preload);
    snprintf(num, sizeof num, "%d", (int)getpid());
    rc |= setenv("PYROMETER_MEM_PARENT", num, 1);
    rc |= setenv("PYROMETER_MEM_OUT", capture, 1);
    snprintf(num, sizeof num, "%llu", (unsigned long long)o->sample);
    rc |= setenv("PYROMETER_MEM_SAMPLE", num, 1);
    rc |= setenv("PYROMETER_MEM_NATIVE", o->native ? "1" : "0", 1);
    /* Python's allocators are wrapped in the program (PyMem_SetAllocator);
     * PYROMETER_MEM_PYALLOC=malloc routes them through malloc instead
     * (PYTHONMALLOC=malloc), which measured slower (see tracker.c) */
    const char *pyalloc = getenv("PYROMETER_MEM_PYALLOC");
    if (pyalloc && strcmp(pyalloc, "malloc") == 0)
        rc |= setenv("PYTHONMALLOC", "malloc", 1);
    return rc ? -1 : 0;
}

/* An absolute path for the capture (the program may change directory); the
 * file is created here so that an unwritable path fails before launching. */
static int prepare_capture(const char *given, char *out, size_t cap, struct pm_error *err)
{
    char name[PATH_MAX];
    if (given) {
        snprintf(name, sizeof name, "%s", given);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(name, sizeof name, "pyrometer-mem-%d-%s.cap", (int)getpid(), stamp);
    }
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return pm_fail(err, PM_EOUTPUT, "cannot write the capture %s: %s", name, strerror(errno));
    close(fd);
    if (realpath(name, out) == NULL || strlen(out) + 16 >= cap)
        return pm_fail(err, PM_EOUTPUT, "cannot resolve the capture path %s", name);
    return 0;
}

static void print_summary(const char *path, const struct replay *r)
{
    char peak[32], total[32], size[32], leak[32];
    memchart_bytes(r->peak_bytes, peak, sizeof peak);
    memchart_bytes(r->total_allocated, total, sizeof total);
    memchart_bytes(r->capture_bytes, size, sizeof size);
    memchart_bytes(r->leak_bytes, leak, sizeof leak);
    uint64_t events = r->alloc_events + r->free_events;
    fprintf(stderr, "pyrometer: %s: %llu allocations, %llu frees (%s allocated) from %s pid %d; "
                    "%s, %.1f bytes per event\n",
            path, (unsigned long long)r->alloc_events, (unsigned long long)r->free_events, total,
            r->python[0] ? "Python" : "a program without Python", r->pid, size,
            events ? (double)r->capture_bytes / (double)events : 0.0);
    fprintf(stderr, "pyrometer: peak %s at %.3f s; %s still held at %s\n", peak,
            (double)r->peak_t_ns / 1e9, leak, r->finalizing ? "shutdown" : "the end");
    for (int i = 0; i < r->nnotes; i++)
        fprintf(stderr, "pyrometer: note: %s\n", r->notes[i]);
    if (r->truncated)
        fprintf(stderr, "pyrometer: note: %s\n", r->truncated_why);
}

/* Child captures of short helper processes — no Python, and less than
 * PRUNE_BELOW bytes ever held (a pyenv shim's readlink and bash, a shell's
 * `$(...)`) — say nothing a user asked about and bury the ones that do:
 * removed, and counted.  PYROMETER_MEM_KEEP_ALL=1 keeps them. */
#define PRUNE_BELOW (1u << 20)
static void prune_helper_captures(const char *capture)
{
    const char *keep = getenv("PYROMETER_MEM_KEEP_ALL");
    if (keep && *keep && strcmp(keep, "0") != 0)
        return;
    char pattern[PATH_MAX + 8];
    snprintf(pattern, sizeof pattern, "%s.*", capture);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0)
        return;
    size_t removed = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        struct replay r;
        struct pm_error err;
        memset(&r, 0, sizeof r);
        if (replay_run(g.gl_pathv[i], &r, NULL, NULL, &err) == 0 && r.python[0] == '\0' &&
            r.peak_bytes < PRUNE_BELOW && unlink(g.gl_pathv[i]) == 0)
            removed++;
        replay_free(&r);
    }
    globfree(&g);
    if (removed)
        fprintf(stderr, "pyrometer: removed %zu capture%s of short non-Python child processes "
                        "(under 1 MiB each; PYROMETER_MEM_KEEP_ALL=1 keeps them)\n",
                removed, removed == 1 ? "" : "s");
}

static int mem_run(int argc, char **argv)
{
    struct run_opts o;
    int rc = parse_run_args(argc, argv, &o);
    if (rc == -2)
        return PM_EXIT_OK;
    if (rc != 0)
        return rc;
    struct pm_error err = {0};
    char lib[PATH_MAX], capture[PATH_MAX];
    if (find_tracker(lib, sizeof lib, &err) != 0 ||
        prepare_capture(o.output, capture, sizeof capture, &err) != 0)
        return cmd_report_error(&err);
    if (set_tracker_env(lib, capture, &o) != 0) {
        pm_fail(&err, PM_ENOMEM, "cannot set the environment for the tracker");
        return cmd_report_error(&err);
    }
    static volatile sig_atomic_t stop;
    cmd_install_stop_handlers(&stop);
    pid_t child;
    if (launch_start(o.command, &child, &err) != 0) {
        unlink(capture);
        return cmd_report_error(&err);
    }
    int status = 0;
    for (;;) {
        if (launch_wait(child, &status, 200))
            break;
        if (stop) {
            status = cmd_stop_child(child, cmd_stop_signal() ? cmd_stop_signal() : SIGINT);
            break;
        }
    }
    char how[128];
    launch_describe_status(status, how, sizeof how);
    /* the tracker writes the header in its constructor: an empty file means
     * it never ran in the program (the one capture we created stays 0) */
    struct stat st;
    if (stat(capture, &st) == 0 && st.st_size == 0) {
        unlink(capture);
        pm_fail(&err, PM_ENOTPYTHON, "%s (which %s) wrote no capture: the tracker was not loaded "
                "into it (statically linked and setuid programs ignore LD_PRELOAD)",
                o.command[0], how);
        return cmd_report_error(&err);
    }
    fprintf(stderr, "pyrometer: the program %s\n", how);
    struct replay r;
    if (replay_with_progress(capture, &r, &err) != 0) {
        replay_free(&r);
        return cmd_report_error(&err);
    }
    print_summary(capture, &r);
    replay_free(&r);
    /* captures of child processes */
    prune_helper_captures(capture);
    char pattern[PATH_MAX + 8];
    snprintf(pattern, sizeof pattern, "%s.*", capture);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) == 0) {
        fprintf(stderr, "pyrometer: %zu child process capture%s:", g.gl_pathc,
                g.gl_pathc == 1 ? "" : "s");
        for (size_t i = 0; i < g.gl_pathc && i < 16; i++)
            fprintf(stderr, " %s", g.gl_pathv[i]);
        fprintf(stderr, "%s\n", g.gl_pathc > 16 ? " ..." : "");
        globfree(&g);
    }
    fprintf(stderr, "pyrometer: see `pyrometer mem report %s` (--peak, --leaks, --allocs, "
                    "--temporal)\n", capture);
    return PM_EXIT_OK;
}

/* ---- report ------------------------------------------------------------------ */

enum view { VIEW_PEAK, VIEW_LEAKS, VIEW_ALLOCS, VIEW_TEMPORAL };

static const char *view_name(enum view v)
{
    return v == VIEW_PEAK ? "peak" : v == VIEW_LEAKS ? "leaks" : v == VIEW_ALLOCS ? "allocs"
                                                                                  : "temporal";
}

struct report_opts {
    const char *capture;
    enum view view;
    int format;               /* -1: terminal table */
    const char *output;
    size_t rows;
    int full_filenames;
};

static int parse_report_args(int argc, char **argv, struct report_opts *o)
{
    static const struct option longopts[] = {
        {"peak", no_argument, 0, 'P'}, {"leaks", no_argument, 0, 'K'},
        {"allocs", no_argument, 0, 'A'}, {"temporal", no_argument, 0, 'T'},
        {"format", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'},
        {"limit", required_argument, 0, 'l'}, {"full-filenames", no_argument, 0, 'F'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->format = -1;
    o->rows = TABLE_ROWS_DEFAULT;
    int views = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "f:o:l:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'P': o->view = VIEW_PEAK; views++; break;
        case 'K': o->view = VIEW_LEAKS; views++; break;
        case 'A': o->view = VIEW_ALLOCS; views++; break;
        case 'T': o->view = VIEW_TEMPORAL; views++; break;
        case 'f':
            o->format = render_format_parse(optarg);
            if (o->format != RENDER_FLAMEGRAPH && o->format != RENDER_SPEEDSCOPE &&
                o->format != RENDER_RAW)
                return cmd_usage_error("mem report",
                                       "unknown format '%s' (flamegraph, speedscope or raw)",
                                       optarg);
            break;
        case 'o': o->output = optarg; break;
        case 'l': {
            double v;
            if (cmd_parse_positive(optarg, &v) != 0)
                return cmd_usage_error("mem report", "invalid --limit '%s'", optarg);
            o->rows = (size_t)v;
            break;
        }
        case 'F': o->full_filenames = 1; break;
        case 'h': mem_usage(stdout); return -2;
        default:
            return cmd_usage_error("mem report", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (views > 1)
        return cmd_usage_error("mem report", "choose one of --peak, --leaks, --allocs, --temporal");
    if (optind >= argc)
        return cmd_usage_error("mem report", "no capture given");
    if (optind + 1 < argc)
        return cmd_usage_error("mem report", "unexpected argument '%s'", argv[optind + 1]);
    o->capture = argv[optind];
    if (o->view == VIEW_TEMPORAL && o->format >= 0)
        return cmd_usage_error("mem report", "--temporal writes HTML; -f does not apply");
    if (o->output && o->format < 0 && o->view != VIEW_TEMPORAL)
        o->format = RENDER_FLAMEGRAPH;
    return 0;
}

static uint64_t view_bytes(const struct replay_totals *t, enum view v)
{
    return v == VIEW_PEAK ? t->peak_bytes : v == VIEW_LEAKS ? t->leak_bytes : t->alloc_bytes;
}

static uint64_t view_count(const struct replay_totals *t, enum view v)
{
    return v == VIEW_PEAK ? t->peak_count : v == VIEW_LEAKS ? t->leak_count : t->alloc_count;
}

static int local_is_package(const char *dir, void *ctx)
{
    (void)ctx;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/__init__.py", dir);
    return access(path, F_OK) == 0;
}

/* The profile of one view: one stack per capture stack, its bytes as the count. */
struct view_profile {
    struct profile *p;
    uint32_t *frame_ids;      /* replay frame id -> profile frame id */
    uint32_t *stack_ids;      /* replay stack id -> profile stack id (UINT32_MAX: none) */
    uint64_t *counts;         /* per profile stack: blocks / allocations */
};

static uint32_t profile_frame_of(struct view_profile *vp, const struct replay *r, uint32_t id)
{
    if (vp->frame_ids[id] != UINT32_MAX)
        return vp->frame_ids[id];
    const struct replay_frame *f = &r->frames[id];
    char short_file[PATH_MAX];
    if (f->kind == REPLAY_PYTHON) {
        filenames_shorten(f->filename, local_is_package, NULL, short_file, sizeof short_file);
    } else {
        const char *base = strrchr(f->filename, '/');
        snprintf(short_file, sizeof short_file, "%s", base ? base + 1 : f->filename);
    }
    vp->frame_ids[id] = profile_frame(vp->p, f->name, f->filename, short_file, f->line,
                                      f->kind == REPLAY_NATIVE ? PROFILE_FRAME_NATIVE
                                                               : PROFILE_FRAME_PYTHON);
    return vp->frame_ids[id];
}

static int build_profile(const struct replay *r, enum view v, struct view_profile *vp,
                         struct pm_error *err)
{
    memset(vp, 0, sizeof *vp);
    vp->p = profile_new();
    vp->frame_ids = malloc(((size_t)r->nframes + 1) * sizeof *vp->frame_ids);
    vp->stack_ids = malloc(((size_t)r->nstacks + 1) * sizeof *vp->stack_ids);
    vp->counts = calloc((size_t)r->nstacks + 1, sizeof *vp->counts);
    uint32_t *chain = malloc(((size_t)r->nstacks + 2) * sizeof *chain);
    if (!vp->p || !vp->frame_ids || !vp->stack_ids || !vp->counts || !chain) {
        free(chain);
        return pm_fail(err, PM_ENOMEM, "out of memory");
    }
    memset(vp->frame_ids, 0xff, ((size_t)r->nframes + 1) * sizeof *vp->frame_ids);
    memset(vp->stack_ids, 0xff, ((size_t)r->nstacks + 1) * sizeof *vp->stack_ids);
    vp->p->meta.pid = r->pid;
    snprintf(vp->p->meta.python_version, sizeof vp->p->meta.python_version, "%.31s", r->python);
    snprintf(vp->p->meta.program, sizeof vp->p->meta.program, "%.200s (%s bytes)", r->command,
             view_name(v));
    vp->p->meta.start_unix_ns = r->start_unix_ns;
    vp->p->meta.duration_ns = r->duration_ns;
    uint32_t thread = profile_thread(vp->p, (uint32_t)r->pid, 0, 0, "");
    for (uint32_t s = 0; s <= r->nstacks; s++) {
        uint64_t bytes = view_bytes(&r->totals[s], v);
        if (bytes == 0)
            continue;
        uint32_t depth = 0;
        if (s == 0) {
            chain[depth++] = profile_frame(vp->p, r->python[0] ? "[no Python frames]"
                                                               : "[no stack]",
                                           "", "", 0, PROFILE_FRAME_SYNTH);
        } else {
            /* leaf to root, then reversed */
            for (uint32_t id = s; id != 0 && depth <= r->nstacks; id = r->stacks[id].parent)
                if (r->stacks[id].frame)
                    chain[depth++] = profile_frame_of(vp, r, r->stacks[id].frame);
            for (uint32_t i = 0; i < depth / 2; i++) {
                uint32_t t = chain[i];
                chain[i] = chain[depth - 1 - i];
                chain[depth - 1 - i] = t;
            }
        }
        uint32_t id = profile_add(vp->p, thread, chain, depth, bytes, 0);
        if (id == UINT32_MAX) {
            free(chain);
            return pm_fail(err, PM_ENOMEM, "out of memory");
        }
        vp->stack_ids[s] = id;
        vp->counts[s] = view_count(&r->totals[s], v);
    }
    free(chain);
    return 0;
}

static void view_profile_free(struct view_profile *vp)
{
    profile_free(vp->p);
    free(vp->frame_ids);
    free(vp->stack_ids);
    free(vp->counts);
}

/* The top locations: own (leaf) and total bytes, and the count of blocks /
 * allocations whose leaf is there. */
struct location {
    uint32_t frame;
    uint64_t own, total, count;
};

static int by_own(const void *a, const void *b)
{
    const struct location *x = a, *y = b;
    if (x->own != y->own)
        return x->own < y->own ? 1 : -1;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

static int print_table(const struct replay *r, const struct view_profile *vp, enum view v,
                       const struct report_opts *o, struct pm_error *err)
{
    const struct profile *p = vp->p;
    struct location *loc = calloc(p->nframes + 1, sizeof *loc);
    uint32_t *seen = calloc(p->nframes + 1, sizeof *seen);
    if (loc == NULL || seen == NULL) {
        free(loc);
        free(seen);
        return pm_fail(err, PM_ENOMEM, "out of memory");
    }
    for (uint32_t f = 0; f < p->nframes; f++)
        loc[f].frame = f;
    for (uint32_t s = 0; s <= r->nstacks; s++) {
        uint32_t id = vp->stack_ids[s];
        if (id == UINT32_MAX)
            continue;
        const struct profile_stack *st = &p->stacks[id];
        const uint32_t *fr = profile_stack_frames(p, st);
        if (st->depth == 0)
            continue;
        uint32_t leaf = fr[st->depth - 1];
        loc[leaf].own += view_bytes(&r->totals[s], v);
        loc[leaf].count += vp->counts[s];
        for (uint32_t i = 0; i < st->depth; i++) {
            if (seen[fr[i]] == s + 1)
                continue;   /* recursion: count a stack once per location */
            seen[fr[i]] = s + 1;
            loc[fr[i]].total += view_bytes(&r->totals[s], v);
        }
    }
    qsort(loc, p->nframes, sizeof *loc, by_own);
    static const char *what[] = {"held at the peak", "still held at the end",
                                 "allocated in all"};
    char total[32];
    uint64_t sum = v == VIEW_PEAK ? r->peak_bytes : v == VIEW_LEAKS ? r->leak_bytes
                                                                    : r->total_allocated;
    memchart_bytes(sum, total, sizeof total);
    printf("%s %s", total, what[v]);
    if (v == VIEW_PEAK)
        printf(" (at %.3f s)", (double)r->peak_t_ns / 1e9);
    if (v == VIEW_LEAKS)
        printf(" (%s)", r->finalizing ? "when the interpreter began to shut down"
                                      : r->ended ? "at exit" : "at the end of the capture");
    printf(" by %s pid %d: %s\n", r->python[0] ? "Python" : "program", r->pid, r->command);
    printf("%10s %10s %9s  %s\n", "own", "total", v == VIEW_ALLOCS ? "allocs" : "blocks",
           "location");
    for (size_t i = 0; i < p->nframes && i < o->rows; i++) {
        if (loc[i].own == 0)
            break;
        char own[32], tot[32];
        memchart_bytes(loc[i].own, own, sizeof own);
        memchart_bytes(loc[i].total, tot, sizeof tot);
        char *label = render_frame_label(p, loc[i].frame, o->full_filenames);
        printf("%10s %10s %9llu  %s\n", own, tot, (unsigned long long)loc[i].count,
               label ? label : "?");
        free(label);
    }
    free(loc);
    free(seen);
    if (fflush(stdout) != 0)
        return pm_fail(err, PM_EOUTPUT, "writing to stdout: %s", strerror(errno));
    return 0;
}

static int write_file(const char *path, int (*fn)(FILE *, const void *, struct pm_error *),
                      const void *ctx, struct pm_error *err)
{
    FILE *out = fopen(path, "w");
    if (out == NULL)
        return pm_fail(err, PM_EOUTPUT, "cannot write %s: %s", path, strerror(errno));
    int rc = fn(out, ctx, err);
    if (fclose(out) != 0 && rc == 0)
        rc = pm_fail(err, PM_EOUTPUT, "writing %s: %s", path, strerror(errno));
    if (rc != 0)
        unlink(path);
    return rc;
}

struct render_ctx {
    int format;
    const struct profile *p;
    const struct render_opts *ro;
    const struct memchart *chart;
};

static int render_cb(FILE *out, const void *v, struct pm_error *err)
{
    const struct render_ctx *c = v;
    if (c->chart)
        return render_memchart(c->chart, out, err);
    return render_profile((enum render_format)c->format, c->p, c->ro, out, err);
}

static int mem_report(int argc, char **argv)
{
    struct report_opts o;
    int rc = parse_report_args(argc, argv, &o);
    if (rc == -2)
        return PM_EXIT_OK;
    if (rc != 0)
        return rc;
    struct pm_error err = {0};
    struct replay r;
    if (replay_with_progress(o.capture, &r, &err) != 0) {
        replay_free(&r);
        return cmd_report_error(&err);
    }
    if (r.truncated)
        fprintf(stderr, "pyrometer: note: %s: %s\n", o.capture, r.truncated_why);
    for (int i = 0; i < r.nnotes; i++)
        fprintf(stderr, "pyrometer: note: %s\n", r.notes[i]);

    struct view_profile vp;
    enum view stack_view = o.view == VIEW_TEMPORAL ? VIEW_PEAK : o.view;
    if (build_profile(&r, stack_view, &vp, &err) != 0) {
        view_profile_free(&vp);
        replay_free(&r);
        return cmd_report_error(&err);
    }
    char title[512];
    snprintf(title, sizeof title, "pyrometer mem: %s bytes — %.400s", view_name(o.view),
             r.command[0] ? r.command : o.capture);
    struct render_opts ro = {.full_filenames = o.full_filenames, .title = title};
    char path[PATH_MAX];
    if (o.view == VIEW_TEMPORAL) {
        struct memchart_point *pts = calloc(r.npoints ? r.npoints : 1, sizeof *pts);
        if (pts == NULL) {
            pm_fail(&err, PM_ENOMEM, "out of memory");
            rc = -1;
        } else {
            for (size_t i = 0; i < r.npoints; i++)
                pts[i] = (struct memchart_point){r.points[i].t_ns, r.points[i].heap,
                                                 r.points[i].heap_max, r.points[i].rss};
            /* the largest holder at the peak, for the page's headline */
            char *where = NULL;
            uint64_t best = 0;
            uint32_t best_stack = UINT32_MAX;
            for (uint32_t s = 0; s <= r.nstacks; s++)
                if (vp.stack_ids[s] != UINT32_MAX && r.totals[s].peak_bytes > best) {
                    best = r.totals[s].peak_bytes;
                    best_stack = vp.stack_ids[s];
                }
            if (best_stack != UINT32_MAX && vp.p->stacks[best_stack].depth) {
                const struct profile_stack *st = &vp.p->stacks[best_stack];
                where = render_frame_label(vp.p, profile_stack_frames(vp.p, st)[st->depth - 1],
                                           o.full_filenames);
            }
            struct memchart chart = {title, pts, r.npoints, r.peak_bytes, r.peak_t_ns, where};
            snprintf(path, sizeof path, "%s", o.output ? o.output : "pyrometer-mem-temporal.html");
            struct render_ctx c = {0, NULL, NULL, &chart};
            rc = write_file(path, render_cb, &c, &err);
            free(where);
            free(pts);
        }
    } else if (o.format >= 0) {
        if (o.output)
            snprintf(path, sizeof path, "%s", o.output);
        else
            snprintf(path, sizeof path, "pyrometer-mem-%s.%s", view_name(o.view),
                     render_format_ext((enum render_format)o.format));
        struct render_ctx c = {o.format, vp.p, &ro, NULL};
        rc = write_file(path, render_cb, &c, &err);
    } else {
        rc = print_table(&r, &vp, o.view, &o, &err);
        path[0] = '\0';
    }
    if (rc == 0 && path[0])
        fprintf(stderr, "pyrometer: wrote %s (%s view)\n", path, view_name(o.view));
    view_profile_free(&vp);
    replay_free(&r);
    return rc == 0 ? PM_EXIT_OK : cmd_report_error(&err);
}

int cmd_mem(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2)
            return cmd_usage_error("mem", "give a subcommand: run or report");
        mem_usage(stdout);
        return PM_EXIT_OK;
    }
    if (strcmp(argv[1], "run") == 0)
        return mem_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "report") == 0)
        return mem_report(argc - 1, argv + 1);
    return cmd_usage_error("mem", "unknown subcommand '%s' (run or report)", argv[1]);
}
