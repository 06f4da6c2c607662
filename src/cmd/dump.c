/*
 * dump.c — `pyrometer dump -p PID [--json]`: every thread of a running Python
 * with its state and its frames, innermost first, as text or as the JSON of
 * VISION.md.  One snapshot, taken without pausing the target; a snapshot
 * with torn threads is retaken a few times before a thread is shown as
 * unreadable.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/text.h"
#include "../python/locals.h"
#include "../python/pyobj.h"
#include "../python/pyrepr.h"
#include "../sample/sampler.h"
#include "../target/core.h"
#include "../target/proc.h"
#include "cmd.h"

#define SNAPSHOT_TRIES 5

struct dump_opts {
    pid_t pid;
    int json;
    int full_filenames;
    int subprocesses;
    int locals;
    int native;
    const char *core;     /* --core: read an ELF core file instead of a process */
    const char *exe;      /* --exe: its executable, when not where the core says */
};

#define LOCALS_MAX 64

static void dump_usage(FILE *out)
{
    fprintf(out,
            "usage: pyrometer dump [options] (-p PID | --core CORE [--exe EXE])\n\n"
            "Prints the current Python stack of every thread, innermost frame first,\n"
            "without pausing the process.\n\n"
            "  -p, --pid PID          the Python process\n"
            "  -c, --core CORE        an ELF core file of a crashed or hung Python (gcore,\n"
            "                         or a core dump); the files it mapped are read from\n"
            "                         this machine\n"
            "  -e, --exe EXE          the executable the core was written from, when it is\n"
            "                         no longer where the core says\n"
            "  -j, --json             JSON: an array of threads\n"
            "  -s, --subprocesses     also every Python child process\n"
            "  -l, --locals           show each frame's arguments and locals (short reprs)\n"
            "  -n, --native           include C frames (each thread paused while its stack is\n"
            "                         copied)\n"
            "      --full-filenames   full paths in text output\n"
            "  -h, --help             this text\n");
}

static int parse_dump_args(int argc, char **argv, struct dump_opts *o)
{
    static const struct option longopts[] = {
        {"pid", required_argument, 0, 'p'}, {"json", no_argument, 0, 'j'},
        {"full-filenames", no_argument, 0, 'A'}, {"help", no_argument, 0, 'h'},
        {"locals", no_argument, 0, 'l'}, {"core", required_argument, 0, 'c'},
        {"native", no_argument, 0, 'n'}, {"subprocesses", no_argument, 0, 's'},
        {"exe", required_argument, 0, 'e'}, {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+p:jhlnsc:e:", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (cmd_parse_pid(optarg, &o->pid) != 0)
                return cmd_usage_error("dump", "invalid PID '%s'", optarg);
            break;
        case 'j': o->json = 1; break;
        case 'A': o->full_filenames = 1; break;
        case 'h': dump_usage(stdout); return -2;
        case 's': o->subprocesses = 1; break;
        case 'l': o->locals = 1; break;
        case 'n': o->native = 1; break;
        case 'c': o->core = optarg; break;
        case 'e': o->exe = optarg; break;
        default:
            return cmd_usage_error("dump", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cmd_usage_error("dump", "unexpected argument '%s'", argv[optind]);
    if (!o->pid == !o->core)
        return cmd_usage_error("dump", "give either -p PID or --core CORE");
    if (o->exe && !o->core)
        return cmd_usage_error("dump", "--exe goes with --core");
    if (o->core && (o->subprocesses || o->native))
        return cmd_usage_error("dump", "--core cannot be combined with -s or -n");
    return 0;
}

/* The arguments and locals of one sampled frame, with reprs; count 0 when
 * they cannot be read (the frame is shown without them). */
struct frame_locals {
    size_t count;
    struct py_local vars[LOCALS_MAX];
    char reprs[LOCALS_MAX][PY_REPR_MAX + 1];
};

static void read_locals(struct py_objctx *ctx, const struct sampled_frame *fr,
                        struct frame_locals *out)
{
    out->count = 0;
    if (ctx == NULL || fr->kind != SAMPLED_PYTHON || fr->code == NULL)
        return;
    struct py_frame frame = {.code = fr->code, .line = fr->line, .addr = fr->frame_addr};
    if (py_frame_locals(ctx, &frame, out->vars, LOCALS_MAX, &out->count, NULL) != 0) {
        out->count = 0;
        return;
    }
    if (out->count > LOCALS_MAX)
        out->count = LOCALS_MAX;
    for (size_t i = 0; i < out->count; i++)
        py_repr(ctx, out->vars[i].value, out->reprs[i], sizeof out->reprs[i], NULL);
}

static void print_text_locals(const struct frame_locals *fl)
{
    for (int args = 1; args >= 0; args--) {
        int header = 0;
        for (size_t i = 0; i < fl->count; i++) {
            if (fl->vars[i].is_arg != args)
                continue;
            if (!header++)
                printf("        %s:\n", args ? "Arguments" : "Locals");
            printf("            %s = %s\n", fl->vars[i].name, fl->reprs[i]);
        }
    }
}

static void print_text(const struct dump_opts *o, const struct sample *smp,
                       struct py_objctx *ctx, struct frame_locals *fl, struct core_file *core)
{
    char cmdline[1024];
    pid_t pid = core ? core_pid(core) : py_pid(smp->py);
    if (core)
        snprintf(cmdline, sizeof cmdline, "%s", core_command(core));
    else
        proc_cmdline(pid, cmdline, sizeof cmdline);
    printf("Process %d: %s%s\n", (int)pid, cmdline, core ? " (from a core file)" : "");
    printf("Python v%s (%s)\n", py_get_version(smp->py)->text, py_binary(smp->py));
    for (size_t i = 0; i < smp->nthreads; i++) {
        const struct sampled_thread *t = &smp->threads[i];
        int signal = core ? core_thread_signal(core, t->os_tid) : 0;
        if (core && signal)
            printf("\nThread %d (stopped by signal %d: %s)%s", (int)t->os_tid, signal,
                   strsignal(signal), t->owns_gil ? " +GIL" : "");
        else if (core)
            printf("\nThread %d%s", (int)t->os_tid, t->owns_gil ? " +GIL" : "");
        else
            printf("\nThread %d (%s)%s", (int)t->os_tid, t->active ? "active" : "idle",
                   t->owns_gil ? " +GIL" : "");
        if (t->name) {
            fputs(": \"", stdout);
            text_put(stdout, t->name);
            fputs("\"", stdout);
        }
        printf("\n");
        for (size_t f = 0; f < t->depth; f++) {
            const struct sampled_frame *fr = &t->frames[f];
            const char *file = o->full_filenames ? fr->filename : fr->short_filename;
            fputs("    ", stdout);
            text_put(stdout, fr->name);
            if (fr->line > 0 || (file && file[0])) {
                fputs(" (", stdout);
                text_put(stdout, file ? file : "");
                if (fr->line > 0)
                    printf(":%d", fr->line);
                fputs(")", stdout);
            }
            fputs("\n", stdout);
            if (o->locals) {
                read_locals(ctx, fr, fl);
                print_text_locals(fl);
            }
        }
        if (t->truncated)
            printf("    (deeper frames not shown)\n");
    }
    if (smp->torn_threads)
        printf("\n(%zu thread(s) changed too fast to be read)\n", smp->torn_threads);
}

/* Append the threads of one process's sample to a JSON array. */
static void add_json_threads(json_t *threads, const struct sample *smp, struct py_objctx *ctx,
                             struct frame_locals *fl, struct core_file *core)
{
    for (size_t i = 0; i < smp->nthreads; i++) {
        const struct sampled_thread *t = &smp->threads[i];
        json_t *frames = json_array();
        for (size_t f = 0; f < t->depth; f++) {
            const struct sampled_frame *fr = &t->frames[f];
            json_t *frame = json_pack("{s:s, s:s, s:s, s:i}", "name", fr->name, "filename",
                                      fr->filename, "short_filename", fr->short_filename,
                                      "line", fr->line);
            if (ctx) {
                read_locals(ctx, fr, fl);
                json_t *vars = json_array();
                for (size_t i = 0; i < fl->count; i++)
                    json_array_append_new(vars, json_pack("{s:s, s:s, s:b}", "name",
                                                          fl->vars[i].name, "repr", fl->reprs[i],
                                                          "arg", fl->vars[i].is_arg));
                json_object_set_new(frame, "locals", vars);
            }
            json_array_append_new(frames, frame);
        }
        pid_t pid = core ? core_pid(core) : t->pid;
        json_t *thread = json_pack("{s:i, s:I, s:I, s:n, s:b, s:b, s:o}", "pid", (int)pid,
                                   "thread_id", (json_int_t)t->thread_id, "os_thread_id",
                                   (json_int_t)t->os_tid, "thread_name", "active", t->active,
                                   "owns_gil", t->owns_gil, "frames", frames);
        if (t->name)
            json_object_set_new(thread, "thread_name", json_string(t->name));
        int signal = core ? core_thread_signal(core, t->os_tid) : 0;
        if (signal)
            json_object_set_new(thread, "signal", json_integer(signal));
        json_array_append_new(threads, thread);
    }
}

static int write_json(json_t *threads, struct pm_error *err)
{
    int rc = json_dumpf(threads, stdout, JSON_INDENT(2));
    if (rc != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        return pm_fail(err, PM_EOUTPUT, "cannot write to standard output");
    return 0;
}

/* One process's snapshot, retaken a few times while threads were torn. */
static int snapshot(struct sampler *sampler, const struct sample **smp, struct pm_error *err)
{
    int rc = -1;
    for (int attempt = 0; attempt < SNAPSHOT_TRIES; attempt++) {
        rc = sampler_take(sampler, smp, err);
        if (rc != 0 && err->code == PM_EGONE)
            break;
        if (rc == 0 && (*smp)->torn_threads == 0)
            break;
    }
    return rc;
}

static void warn_core_file(const char *path, const char *why, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "pyrometer: warning: %s: %s\n", path, why);
}

struct dump_state {
    const struct dump_opts *opts;
    struct core_file *core;       /* --core */
    json_t *threads;      /* --json: every process's threads */
    size_t processes;
    struct frame_locals locals;   /* scratch for one frame */
};

/* Each process of a -s dump, as the group hands it over. */
static int dump_one(const struct sample *smp, void *ctx)
{
    struct dump_state *ds = ctx;
    struct py_objctx objects, *objs = NULL;
    struct pm_error err;
    if (ds->opts->locals) {
        if (py_objctx_init_process(&objects, smp->py, &err) == 0)
            objs = &objects;
        else
            fprintf(stderr, "pyrometer: warning: no locals for process %d: %s\n",
                    (int)py_pid(smp->py), err.msg);
    }
    if (ds->threads) {
        add_json_threads(ds->threads, smp, objs, &ds->locals, ds->core);
    } else {
        if (ds->processes)
            printf("\n");
        print_text(ds->opts, smp, objs, &ds->locals, ds->core);
    }
    ds->processes++;
    return 0;
}

int cmd_dump(int argc, char **argv)
{
    struct dump_opts o;
    int rc = parse_dump_args(argc, argv, &o);
    if (rc == -2)
        return 0;
    if (rc != 0)
        return rc;
    struct pm_error err = {0};
    struct py_process *py = NULL;
    struct sampler *sampler = NULL;
    struct sampler_group *group = NULL;
    /* heap: the locals scratch space is large */
    struct dump_state *ds = calloc(1, sizeof *ds);
    if (ds == NULL) {
        pm_fail(&err, PM_ENOMEM, "out of memory");
        return cmd_report_error(&err);
    }
    ds->opts = &o;
    ds->threads = o.json ? json_array() : NULL;
    int exit_code = 0;
    if (o.core) {
        if (core_open(o.core, o.exe, &ds->core, &err) != 0 ||
            py_attach_core(ds->core, &py, &err) != 0)
            goto out;
        core_file_problems(ds->core, warn_core_file, NULL);
    } else if (py_attach(o.pid, &py, &err) != 0) {
        /* with -s the root may be a shell or a supervisor */
        if (!(o.subprocesses && err.code == PM_ENOTPYTHON))
            goto out;
        pm_clear(&err);
    }
    if (py && (sampler = sampler_new(py)) == NULL) {
        pm_fail(&err, PM_ENOMEM, "out of memory");
        goto out;
    }
    if (sampler && o.native && sampler_enable_native(sampler, 1, &err) != 0)
        goto out;
    if (o.subprocesses) {
        group = sampler_group_new(o.pid, sampler, 1);
        if (group == NULL) {
            pm_fail(&err, PM_ENOMEM, "out of memory");
            goto out;
        }
        sampler_group_set_native(group, o.native, 1);
        if (sampler_group_snapshot(group, dump_one, ds, &err) != 0)
            goto out;
        if (ds->processes == 0) {
            pm_fail(&err, PM_ENOTPYTHON, "neither process %d nor its children run Python",
                    (int)o.pid);
            goto out;
        }
    } else {
        const struct sample *smp;
        if (snapshot(sampler, &smp, &err) != 0)
            goto out;
        dump_one(smp, ds);
    }
    if (ds->threads && write_json(ds->threads, &err) != 0)
        goto out;
    if (!ds->threads && fflush(stdout) != 0)
        pm_fail(&err, PM_EOUTPUT, "cannot write to standard output");
out:
    if (err.code != PM_OK)
        exit_code = cmd_report_error(&err);
    json_decref(ds->threads);
    sampler_group_free(group);
    sampler_free(sampler);
    py_detach(py);
    core_close(ds->core);
    free(ds);
    return exit_code;
}
