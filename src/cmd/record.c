/*
 * record.c — `pyrometer record`: sample a Python program (attached by PID or
 * launched after `--`) until Ctrl-C, -d, or its exit, aggregate the stacks
 * into a profile and write it in the asked format.  The output file is
 * opened before sampling starts, so an unwritable path fails at once, and
 * the profile is written however sampling ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/text.h"
#include "../profile/profile.h"
#include "../render/render.h"
#include "../sample/endpoints.h"
#include "../sample/sampler.h"
#include "../target/launch.h"
#include "../target/proc.h"
#include "cmd.h"

struct record_opts {
    const char *output;
    int format;
    double rate;
    double duration;
    pid_t pid;
    char **command;
    int idle, gil_only, threads, by_function, nolineno, full_filenames, subprocesses, blocking;
    int native;
    int by_endpoint;
};

static void record_usage(FILE *out)
{
    fprintf(out,
            "usage: pyrometer record [options] (-p PID | -- COMMAND [ARG...])\n\n"
            "Samples the Python stacks of a running process (or a program it starts) without\n"
            "pausing it, and writes a profile.\n\n"
            "  -p, --pid PID          attach to this running Python process\n"
            "  -o, --output FILE      where to write (default pyrometer-PID-TIME.EXT)\n"
            "  -f, --format FORMAT    flamegraph (interactive SVG, default) | speedscope |\n"
            "                         raw (collapsed stacks) | pprof (gzip protobuf) |\n"
            "                         chrometrace (Trace Event JSON: Perfetto, chrome://tracing) |\n"
            "                         pstats (pstats.Stats / SnakeViz)\n"
            "  -r, --rate HZ          samples per second (default 100)\n"
            "  -d, --duration SECS    stop after this long (default: until exit or Ctrl-C)\n"
            "  -i, --idle             keep threads that are not running on a CPU\n"
            "  -g, --gil              keep only the thread holding the GIL\n"
            "  -t, --threads          add a root frame per thread\n"
            "  -s, --subprocesses     also sample child processes (a root frame per process)\n"
            "      --by-endpoint      a root frame per endpoint (\"GET /route/\") a thread serves,\n"
            "                         from pyrometer's in-process agent (see `pyrometer run`)\n"
            "  -n, --native           include C frames (extensions, builtins) under the Python\n"
            "                         line that called them; pauses each running thread\n"
            "                         only while its stack is copied (~10 us)\n"
            "      --blocking         pause the target for each sample (consistent stacks;\n"
            "                         slows it down); by default it is never paused\n"
            "  -F, --function         aggregate by function (its first line), not by line\n"
            "      --nolineno         no line numbers in labels\n"
            "      --full-filenames   full paths instead of package-relative ones\n"
            "  -h, --help             this text\n");
}

static int parse_record_args(int argc, char **argv, struct record_opts *o)
{
    static const struct option longopts[] = {
        {"pid", required_argument, 0, 'p'},      {"output", required_argument, 0, 'o'},
        {"format", required_argument, 0, 'f'},   {"rate", required_argument, 0, 'r'},
        {"duration", required_argument, 0, 'd'}, {"idle", no_argument, 0, 'i'},
        {"gil", no_argument, 0, 'g'},            {"threads", no_argument, 0, 't'},
        {"function", no_argument, 0, 'F'},       {"nolineno", no_argument, 0, 'L'},
        {"full-filenames", no_argument, 0, 'A'}, {"help", no_argument, 0, 'h'},
        {"subprocesses", no_argument, 0, 's'},   {"native", no_argument, 0, 'n'},
        {"blocking", no_argument, 0, 'B'},       {"by-endpoint", no_argument, 0, 'E'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->rate = 100;
    o->format = RENDER_FLAMEGRAPH;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+p:o:f:r:d:igtFhsn", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (cmd_parse_pid(optarg, &o->pid) != 0)
                return cmd_usage_error("record", "invalid PID '%s'", optarg);
            break;
        case 'o': o->output = optarg; break;
        case 'f':
            o->format = render_format_parse(optarg);
            if (o->format < 0)
                return cmd_usage_error("record", "unknown format '%s' (flamegraph, speedscope, "
                                       "raw, pprof, chrometrace, pstats)", optarg);
            break;
        case 'r':
            if (cmd_parse_positive(optarg, &o->rate) != 0 || o->rate > 100000)
                return cmd_usage_error("record", "invalid rate '%s' (Hz, up to 100000)", optarg);
            break;
        case 'd':
            if (cmd_parse_positive(optarg, &o->duration) != 0)
                return cmd_usage_error("record", "invalid duration '%s' (seconds)", optarg);
            break;
        case 'i': o->idle = 1; break;
        case 'g': o->gil_only = 1; break;
        case 't': o->threads = 1; break;
        case 'F': o->by_function = 1; break;
        case 'L': o->nolineno = 1; break;
        case 'A': o->full_filenames = 1; break;
        case 'h': record_usage(stdout); return -2;
        case 's': o->subprocesses = 1; break;
        case 'B': o->blocking = 1; break;
        case 'n': o->native = 1; break;
        case 'E': o->by_endpoint = 1; break;
        default:
            return cmd_usage_error("record", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        o->command = argv + optind;
    if (o->pid && o->command)
        return cmd_usage_error("record", "give either -p PID or a command, not both");
    if (o->native && o->blocking)
        return cmd_usage_error("record", "-n and --blocking cannot be combined yet");
    if (!o->pid && !o->command)
        return cmd_usage_error("record", "nothing to profile: give -p PID or -- COMMAND");
    return 0;
}

/* ---- aggregation: one sample into the profile --------------------------- */

/* Who held the GIL, over all samples (whatever the filters keep). */
#define GIL_MAX_THREADS 256
struct gil_tally {
    uint64_t samples;            /* samples taken */
    uint64_t held;               /* samples in which some thread held it */
    size_t nthreads;
    struct {
        pid_t pid, tid;
        uint64_t held;
        char name[64];
    } threads[GIL_MAX_THREADS];
};

#define PROCESS_LABELS_MAX 1024
#define FRAME_MEMO_SIZE 4096u   /* power of two */

struct record_state {
    struct profile *profile;
    const struct record_opts *opts;
    pid_t pid;
    size_t nprocs;                 /* -s: one root frame label per process */
    struct {
        pid_t pid;
        uint32_t frame;
    } procs[PROCESS_LABELS_MAX];
    uint32_t ids[SAMPLE_MAX_DEPTH + 4];
    uint64_t endpoint_changed;     /* --by-endpoint: thread samples left out */
    int failed;
    struct gil_tally gil;
    /* profile frame ids of Python frames by (pid, code serial, line): a
     * steady stack then costs no string hashing per sample */
    struct frame_memo {
        uint64_t serial;       /* 0 = empty */
        int32_t line;
        pid_t pid;
        uint32_t id;
    } memo[FRAME_MEMO_SIZE];
    struct endpoint_map *endpoints;   /* --by-endpoint */
};

/* The profile frame of a Python frame, through the memo. */
static uint32_t python_frame_id(struct record_state *rs, const struct sampled_frame *fr,
                                pid_t pid, int line)
{
    uint64_t serial = fr->code ? fr->code->serial : 0;
    struct frame_memo *m = NULL;
    if (serial != 0) {
        uint64_t h = (serial * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(uint32_t)line << 17) ^
                     (uint64_t)pid;
        m = &rs->memo[(h >> 20) & (FRAME_MEMO_SIZE - 1)];
        if (m->serial == serial && m->line == line && m->pid == pid)
            return m->id;
    }
    uint32_t id = profile_frame(rs->profile, fr->name, fr->filename, fr->short_filename, line,
                                PROFILE_FRAME_PYTHON);
    if (m != NULL && id != UINT32_MAX)
        *m = (struct frame_memo){serial, line, pid, id};
    return id;
}

static void gil_count(struct gil_tally *g, const struct sample *smp)
{
    g->samples++;
    for (size_t i = 0; i < smp->nthreads; i++) {
        const struct sampled_thread *t = &smp->threads[i];
        if (!t->owns_gil)
            continue;
        g->held++;
        size_t k = 0;
        while (k < g->nthreads && (g->threads[k].tid != t->os_tid || g->threads[k].pid != t->pid))
            k++;
        if (k == g->nthreads) {
            if (k == GIL_MAX_THREADS)
                return;
            g->nthreads++;
            g->threads[k].pid = t->pid;
            g->threads[k].tid = t->os_tid;
            g->threads[k].held = 0;
            g->threads[k].name[0] = '\0';
        }
        /* names appear once the program has imported threading */
        if (t->name && !g->threads[k].name[0]) {
            snprintf(g->threads[k].name, sizeof g->threads[k].name, "%s", t->name);
            text_one_line(g->threads[k].name);   /* printed on the terminal */
        }
        g->threads[k].held++;
        return;   /* one holder per interpreter; count the sample once */
    }
}

static int by_held_desc(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* "GIL held in 63.0% of samples: MainThread (1234) 60.0%, worker (1240) 3.0%" */
static void gil_print(struct gil_tally *g)
{
    if (g->samples == 0)
        return;
    fprintf(stderr, "pyrometer: GIL held in %.1f%% of samples", 100.0 * (double)g->held /
                                                                   (double)g->samples);
    /* (held, index) pairs sorted by held, descending */
    uint64_t order[GIL_MAX_THREADS][2];
    for (size_t k = 0; k < g->nthreads; k++) {
        order[k][0] = g->threads[k].held;
        order[k][1] = k;
    }
    qsort(order, g->nthreads, sizeof order[0], by_held_desc);
    for (size_t i = 0; i < g->nthreads && i < 5; i++) {
        size_t k = (size_t)order[i][1];
        fprintf(stderr, "%s %s%sthread %d %.1f%%", i ? "," : ":", g->threads[k].name,
                g->threads[k].name[0] ? " " : "", (int)g->threads[k].tid,
                100.0 * (double)g->threads[k].held / (double)g->samples);
    }
    if (g->nthreads > 5)
        fprintf(stderr, ", %zu more", g->nthreads - 5);
    fputc('\n', stderr);
}

/* -s: the frame "process PID: COMMAND" for pid, made once. */
static uint32_t process_frame(struct record_state *rs, pid_t pid)
{
    for (size_t i = 0; i < rs->nprocs; i++)
        if (rs->procs[i].pid == pid)
            return rs->procs[i].frame;
    char cmdline[200], label[256];
    proc_cmdline(pid, cmdline, sizeof cmdline);
    snprintf(label, sizeof label, "process %d: %s", (int)pid, cmdline);
    uint32_t frame = profile_frame(rs->profile, label, "", "", 0, PROFILE_FRAME_SYNTH);
    if (rs->nprocs < PROCESS_LABELS_MAX) {
        rs->procs[rs->nprocs].pid = pid;
        rs->procs[rs->nprocs].frame = frame;
        rs->nprocs++;
    }
    return frame;
}

/* The sampler's before_take under --by-endpoint. */
static void endpoints_before(pid_t pid, void *ctx)
{
    struct record_state *rs = ctx;
    endpoint_map_before(rs->endpoints, pid);
}

static int add_sample(const struct sample *smp, void *ctx)
{
    struct record_state *rs = ctx;
    const struct record_opts *o = rs->opts;
    gil_count(&rs->gil, smp);
    for (size_t i = 0; i < smp->nthreads; i++) {
        const struct sampled_thread *t = &smp->threads[i];
        if (t->depth == 0 || (!o->idle && !t->active) || (o->gil_only && !t->owns_gil))
            continue;
        const char *ep = NULL;
        if (o->by_endpoint && rs->endpoints &&
            endpoint_map_label(rs->endpoints, t->pid, t->os_tid, smp->t_ns, &ep) ==
                ENDPOINT_CHANGED) {
            rs->endpoint_changed++;   /* the stack may be either request's */
            continue;
        }
        uint32_t thread = profile_thread(rs->profile, (uint32_t)t->pid, t->thread_id,
                                         (uint64_t)t->os_tid, t->name);
        uint32_t n = 0;
        if (o->subprocesses)
            rs->ids[n++] = process_frame(rs, t->pid);
        if (o->by_endpoint)
            rs->ids[n++] = profile_frame(rs->profile, ep ? ep : "(no request)", "", "", 0,
                                         PROFILE_FRAME_SYNTH);
        if (o->threads) {
            char label[200];
            if (t->name)
                snprintf(label, sizeof label, "Thread %d \"%s\"", (int)t->os_tid, t->name);
            else
                snprintf(label, sizeof label, "Thread %d", (int)t->os_tid);
            rs->ids[n++] = profile_frame(rs->profile, label, "", "", 0, PROFILE_FRAME_SYNTH);
        }
        if (t->truncated)
            rs->ids[n++] = profile_frame(rs->profile, "(deeper frames not shown)", "", "", 0,
                                         PROFILE_FRAME_SYNTH);
        for (size_t f = t->depth; f-- > 0;) {
            const struct sampled_frame *fr = &t->frames[f];
            int native = fr->kind == SAMPLED_NATIVE;
            int line = o->by_function ? fr->firstlineno : fr->line;
            if (o->nolineno || line < 0 || native)
                line = 0;
            rs->ids[n++] = native ? profile_frame(rs->profile, fr->name, fr->filename,
                                                  fr->short_filename, line, PROFILE_FRAME_NATIVE)
                                  : python_frame_id(rs, fr, t->pid, line);
        }
        for (uint32_t k = 0; k < n; k++)
            if (rs->ids[k] == UINT32_MAX)
                return rs->failed = 1;
        if (profile_add(rs->profile, thread, rs->ids, n, 1, smp->t_ns) == UINT32_MAX)
            return rs->failed = 1;
    }
    return 0;
}

/* ---- the output file ---------------------------------------------------- */

/* Open the output now, so an unwritable path fails before any sampling, but
 * change nothing yet: an existing file is neither truncated nor, if we
 * fail, removed (it may be /dev/null or somebody's earlier profile). */
static FILE *output_open(const char *path, int *created, struct pm_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    *created = fd >= 0;
    if (fd < 0 && errno == EEXIST)
        fd = open(path, O_WRONLY | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        pm_fail(err, PM_EOUTPUT, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    return f;
}

/* Just before writing: an existing regular file is emptied. */
static int output_begin(FILE *f, const char *path, struct pm_error *err)
{
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && ftruncate(fileno(f), 0) != 0)
        return pm_fail(err, PM_EOUTPUT, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* On failure: remove the file only if this run created it. */
static void output_abandon(FILE *f, const char *path, int created)
{
    if (f)
        fclose(f);
    if (created)
        unlink(path);
}

/* ---- the command ------------------------------------------------------- */

static void default_output(const struct record_opts *o, pid_t pid, char *out, size_t cap)
{
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    snprintf(out, cap, "pyrometer-%d-%s.%s", (int)pid, stamp,
             render_format_ext((enum render_format)o->format));
}

/* PYROMETER_STATS=FILE: what sampling cost, as JSON, for bench/run.py (a
 * figure, so a file that cannot be written is only warned about). */
static void write_costs(const char *path, const struct sampler_costs *c,
                        const struct sampler_result *res)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "pyrometer: warning: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    double ticks = c->ticks ? (double)c->ticks : 1;
    /* peak RSS: VmHWM of this address space; ru_maxrss would include the
     * memory of whatever forked us before exec */
    uint64_t hwm = 0;
    long hwm_kb = proc_status_kib(getpid(), "VmHWM", &hwm) == 0 ? (long)(hwm / 1024) : -1;
    fprintf(f,
            "{\"ticks\": %llu, \"samples\": %llu, \"errors\": %llu, \"elapsed_s\": %.6f,\n"
            " \"cost_us\": {\"median\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"mean\": %.3f, "
            "\"max\": %.2f},\n"
            " \"syscalls_per_sample\": %.3f, \"cpu_s\": %.6f, \"max_rss_kb\": %ld}\n",
            (unsigned long long)c->ticks, (unsigned long long)res->samples,
            (unsigned long long)res->errors, (double)res->elapsed_ns / 1e9,
            sampler_costs_percentile(c, 50), sampler_costs_percentile(c, 90),
            sampler_costs_percentile(c, 99), (double)c->total_ns / ticks / 1000.0,
            (double)c->max_ns / 1000.0, (double)c->syscalls / ticks, cpu, hwm_kb);
    if (fclose(f) != 0)
        fprintf(stderr, "pyrometer: warning: cannot write %s: %s\n", path, strerror(errno));
}

static void print_summary(const struct record_opts *o, const struct sampler_result *res,
                          const struct py_process *py, pid_t pid)
{
    double secs = (double)res->elapsed_ns / 1e9;
    double achieved = secs > 0 ? (double)res->samples / secs : 0;
    uint64_t attempts = res->thread_samples + res->errors;
    fprintf(stderr,
            "pyrometer: %llu samples in %.2f s (%.1f Hz, asked %.0f) from %s%s%spid %d; "
            "%llu errors (%.2f%%)\n",
            (unsigned long long)res->samples, secs, achieved, o->rate, py ? "Python " : "",
            py ? py_get_version(py)->text : "", py ? " " : "", (int)pid,
            (unsigned long long)res->errors,
            attempts ? 100.0 * (double)res->errors / (double)attempts : 0.0);
    if (res->ticks && res->late * 100 > res->ticks)
        fprintf(stderr, "pyrometer: warning: %llu of %llu samples were taken late (a busy "
                "machine, or a rate too high for it)\n",
                (unsigned long long)res->late, (unsigned long long)res->ticks);
}

int cmd_record(int argc, char **argv)
{
    struct record_opts o;
    int rc = parse_record_args(argc, argv, &o);
    if (rc == -2)
        return 0;
    if (rc != 0)
        return rc;

    static volatile sig_atomic_t stop;
    cmd_install_stop_handlers(&stop);
    struct pm_error err = {0};
    const char *stats_path = getenv("PYROMETER_STATS");
    struct sampler_costs *costs = NULL;

    char path_buf[512];
    const char *path = o.output;
    if (path == NULL) {
        default_output(&o, o.pid ? o.pid : getpid(), path_buf, sizeof path_buf);
        path = path_buf;
    }
    int created;
    FILE *out = output_open(path, &created, &err);
    if (out == NULL)
        return cmd_report_error(&err);

    pid_t pid = o.pid, child = 0;
    if (o.command) {
        if (launch_start(o.command, &child, &err) != 0) {
            output_abandon(out, path, created);
            return cmd_report_error(&err);
        }
        pid = child;
    }

    struct profile *profile = profile_new();
    struct py_process *py = NULL;
    struct sampler *sampler = NULL;
    struct sampler_group *group = NULL;
    struct sampler_result res = {0};
    struct record_state *rs = NULL;
    int exit_code = 0;
    if (profile)
        profile->no_timeline = !render_needs_timeline((enum render_format)o.format);
    if (profile == NULL) {
        pm_fail(&err, PM_ENOMEM, "out of memory");
        goto fail;
    }
    /* With -s the root need not be Python (a shell, a supervisor): its
     * Python descendants are what we sample, so don't wait long for it. */
    int root_attached = cmd_attach(pid, child, o.subprocesses ? 1.0 : 10.0, &py, &err) == 0;
    if (!root_attached && o.subprocesses && err.code == PM_ENOTPYTHON) {
        pm_clear(&err);
    } else if (!root_attached) {
        /* a launched program that finished before Python started still
         * gets an (empty) profile */
        if (!(child && err.code == PM_EGONE))
            goto fail;
        fprintf(stderr, "pyrometer: warning: %s\n", err.msg);
        res.target_exited = 1;
    }
    if (root_attached || (o.subprocesses && !res.target_exited)) {
        if (root_attached && (sampler = sampler_new(py)) == NULL) {
            pm_fail(&err, PM_ENOMEM, "out of memory");
            goto fail;
        }
        if (sampler && o.native && sampler_enable_native(sampler, o.idle, &err) != 0)
            goto fail;
        group = sampler_group_new(pid, sampler, o.subprocesses);
        if (group == NULL) {
            pm_fail(&err, PM_ENOMEM, "out of memory");
            goto fail;
        }
        sampler_group_set_blocking(group, o.blocking);
        sampler_group_set_native(group, o.native, o.idle);
        struct sampler_config cfg = {
            .rate_hz = o.rate,
            .duration_s = o.duration,
            .stop = &stop,
            .child = child,
            .progress = isatty(STDERR_FILENO),
        };
        if (stats_path && (costs = calloc(1, sizeof *costs)) == NULL) {
            pm_fail(&err, PM_ENOMEM, "out of memory");
            goto fail;
        }
        cfg.costs = costs;
        rs = calloc(1, sizeof *rs);
        if (rs == NULL) {
            pm_fail(&err, PM_ENOMEM, "out of memory");
            goto fail;
        }
        rs->profile = profile;
        rs->opts = &o;
        rs->endpoints = o.by_endpoint ? endpoint_map_new() : NULL;
        if (rs->endpoints)
            cfg.before_take = endpoints_before;
        rs->pid = pid;
        if (sampler_group_run(group, &cfg, add_sample, rs, &res, &err) != 0)
            goto fail;
        if (rs->failed) {
            pm_fail(&err, PM_ENOMEM, "out of memory while aggregating samples");
            goto fail;
        }
    }

    profile->meta.pid = pid;
    profile->meta.rate_hz = o.rate;
    profile->meta.duration_ns = res.elapsed_ns;
    profile->meta.samples = res.samples;
    profile->meta.errors = res.errors;
    profile->meta.start_unix_ns = (uint64_t)time(NULL) * 1000000000ull - res.elapsed_ns;
    snprintf(profile->meta.python_version, sizeof profile->meta.python_version, "%s",
             py ? py_get_version(py)->text : "");
    if (o.command) {
        size_t used = 0;
        for (char **a = o.command; *a && used + 1 < sizeof profile->meta.program; a++)
            used += (size_t)snprintf(profile->meta.program + used,
                                     sizeof profile->meta.program - used, "%s%s",
                                     used ? " " : "", *a);
    } else {
        snprintf(profile->meta.program, sizeof profile->meta.program, "pid %d", (int)pid);
    }

    struct render_opts ropts = {.full_filenames = o.full_filenames};
    if (output_begin(out, path, &err) != 0 ||
        render_profile((enum render_format)o.format, profile, &ropts, out, &err) != 0) {
        fclose(out);
        goto fail_written;
    }
    if (fclose(out) != 0) {
        pm_fail(&err, PM_EOUTPUT, "cannot write %s: %s", path, strerror(errno));
        goto fail_written;
    }
    out = NULL;

    print_summary(&o, &res, py, pid);
    if (rs && rs->endpoint_changed)
        fprintf(stderr, "pyrometer: %llu thread samples left out: a request began or ended "
                "while their stack was read\n", (unsigned long long)rs->endpoint_changed);
    if (costs)
        write_costs(stats_path, costs, &res);
    if (o.subprocesses && rs)
        fprintf(stderr, "pyrometer: sampled %zu process%s\n", rs->nprocs,
                rs->nprocs == 1 ? "" : "es");
    if (rs)
        gil_print(&rs->gil);
    if (profile_total(profile) > 0) {
        fprintf(stderr, "pyrometer: hottest functions:\n");
        render_top_table(profile, 5, &ropts, stderr, &err);
    }
    if (res.target_exited && !child)
        fprintf(stderr, "pyrometer: process %d exited while being sampled\n", (int)pid);
    if (child) {
        int status = res.child_status;
        if (!res.child_status_valid) {
            if (res.stopped_by_signal || o.duration > 0)
                fprintf(stderr, "pyrometer: stopping the program (%s)\n",
                        res.stopped_by_signal ? "interrupted" : "duration reached");
            status = cmd_stop_child(child, res.stopped_by_signal && cmd_stop_signal()
                                                   ? cmd_stop_signal() : SIGTERM);
        }
        char how[128];
        launch_describe_status(status, how, sizeof how);
        fprintf(stderr, "pyrometer: the program %s\n", how);
    }
    fprintf(stderr, "pyrometer: wrote %s to %s\n",
            render_format_name((enum render_format)o.format), path);
    if (rs)
        endpoint_map_free(rs->endpoints);
    free(rs);
    free(costs);
    sampler_group_free(group);
    sampler_free(sampler);
    py_detach(py);
    profile_free(profile);
    return exit_code;

fail:
    output_abandon(out, path, created);
fail_written:
    exit_code = cmd_report_error(&err);
    if (child && !res.child_status_valid)
        cmd_stop_child(child, SIGTERM);
    if (rs)
        endpoint_map_free(rs->endpoints);
    free(rs);
    free(costs);
    sampler_group_free(group);
    sampler_free(sampler);
    py_detach(py);
    profile_free(profile);
    return exit_code;
}
