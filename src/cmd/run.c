/*
 * run.c — `pyrometer run [options] -- COMMAND...`: run a command with the
 * in-process agent enabled in every Python process it starts (gunicorn's
 * workers included), without touching its settings or code.
 *
 * Puts the agent's boot directory (a sitecustomize.py that chains to any
 * existing one and activates the agent) and the directory holding the
 * `pyrometer` package in front of PYTHONPATH, sets PYROMETER_DB (absolute)
 * and PYROMETER_SERVICE, then execs the command: signals, exit status and
 * the process tree are the command's own.  Finds the agent beside the
 * binary (build/agent, or PREFIX/lib/pyrometer/agent once installed), or
 * where PYROMETER_AGENT_DIR says.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"

static void run_usage(FILE *out)
{
    fprintf(out,
            "usage: pyrometer run [options] -- COMMAND [ARG...]\n\n"
            "Runs COMMAND with pyrometer's in-process agent enabled in every Python 3.8+ process\n"
            "it starts: Django requests (the middleware is inserted), WSGI apps served by\n"
            "gunicorn, sqlite3 and psycopg2 connections are recorded, with their SQL queries,\n"
            "into one SQLite file per service.  Read it with `pyrometer requests DB`.\n\n"
            "      --db FILE          where records go (default $PYROMETER_DB, else\n"
            "                         ./pyrometer-SERVICE.db)\n"
            "      --service NAME     the service's name (default: the command's name)\n"
            "      --n-plus-one N     queries from one call site with one fingerprint that make\n"
            "                         an N+1 finding (default 5)\n"
            "      --capture-params   also store parameter values (never stored otherwise)\n"
            "  -h, --help             this text\n");
}

static int usable_agent_dir(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/python/pyrometer/_agent.abi3.so", dir);
    if (access(path, R_OK) != 0)
        return 0;
    snprintf(path, sizeof path, "%s/boot/sitecustomize.py", dir);
    return access(path, R_OK) == 0;
}

/* The agent's directory (holding python/ and boot/), or -1. */
static int find_agent_dir(char *out, size_t cap, struct pm_error *err)
{
    const char *env = getenv("PYROMETER_AGENT_DIR");
    if (env && *env) {
        if (realpath(env, out) && usable_agent_dir(out))
            return 0;
        return pm_fail(err, PM_ENOTFOUND, "PYROMETER_AGENT_DIR=%s holds no built agent "
                       "(python/pyrometer/_agent.abi3.so and boot/sitecustomize.py)", env);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return pm_fail(err, PM_ENOTFOUND, "cannot find pyrometer's own path: %s", strerror(errno));
    exe[n] = '\0';
    const char *bindir = dirname(exe);
    const char *candidates[] = {"%s/agent", "%s/../lib/pyrometer/agent"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, candidates[i], bindir);
        if (realpath(path, out) && strlen(out) < cap && usable_agent_dir(out))
            return 0;
    }
    return pm_fail(err, PM_ENOTFOUND, "the in-process agent is not built next to %s "
                   "(run `make agent`, or set PYROMETER_AGENT_DIR)", bindir);
}

int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, 0, 'D'},        {"service", required_argument, 0, 'S'},
        {"n-plus-one", required_argument, 0, 'N'}, {"capture-params", no_argument, 0, 'C'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
    };
    const char *db = NULL, *service = NULL, *n_plus_one = NULL;
    int capture = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case 'D': db = optarg; break;
        case 'S': service = optarg; break;
        case 'N': {
            double v;
            if (cmd_parse_positive(optarg, &v) != 0 || v < 2 || v != (long)v || v > 1000000)
                return cmd_usage_error("run", "invalid --n-plus-one '%s' (a whole number >= 2)",
                                       optarg);
            n_plus_one = optarg;
            break;
        }
        case 'C': capture = 1; break;
        case 'h': run_usage(stdout); return 0;
        default: return cmd_usage_error("run", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cmd_usage_error("run", "no command given (pyrometer run -- COMMAND...)");
    char **command = argv + optind;

    struct pm_error err = {0};
    char agent[PATH_MAX];
    if (find_agent_dir(agent, sizeof agent, &err) != 0)
        return cmd_report_error(&err);

    char name[256];
    if (service == NULL) {
        char copy[PATH_MAX];
        snprintf(copy, sizeof copy, "%s", command[0]);
        snprintf(name, sizeof name, "%s", basename(copy));
        service = name;
    }
    char dbfile[PATH_MAX + 300];
    if (db == NULL)
        db = getenv("PYROMETER_DB");
    if (db == NULL || *db == '\0') {
        snprintf(dbfile, sizeof dbfile, "pyrometer-%s.db", service);
        db = dbfile;
    }
    char *dbabs;
    if (db[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL)
            return cmd_report_error(&(struct pm_error){PM_EOUTPUT, "cannot get the current "
                                                       "directory"});
        dbabs = malloc(strlen(cwd) + strlen(db) + 2);
        if (dbabs)
            sprintf(dbabs, "%s/%s", cwd, db);
    } else {
        dbabs = strdup(db);
    }
    if (dbabs == NULL)
        return cmd_report_error(&(struct pm_error){PM_ENOMEM, "out of memory"});

    const char *old = getenv("PYTHONPATH");
    size_t len = 2 * strlen(agent) + (old ? strlen(old) : 0) + 32;
    char *pythonpath = malloc(len);
    if (pythonpath == NULL)
        return cmd_report_error(&(struct pm_error){PM_ENOMEM, "out of memory"});
    snprintf(pythonpath, len, "%s/boot:%s/python%s%s", agent, agent, old && *old ? ":" : "",
             old && *old ? old : "");
    if (setenv("PYTHONPATH", pythonpath, 1) != 0 || setenv("PYROMETER_DB", dbabs, 1) != 0 ||
        setenv("PYROMETER_SERVICE", service, 1) != 0 || setenv("PYROMETER_AGENT", "1", 1) != 0 ||
        (n_plus_one && setenv("PYROMETER_N_PLUS_ONE", n_plus_one, 1) != 0) ||
        (capture && setenv("PYROMETER_CAPTURE_PARAMS", "1", 1) != 0)) {
        free(pythonpath);
        return cmd_report_error(&(struct pm_error){PM_ENOMEM, "cannot set the environment"});
    }
    free(pythonpath);
    fflush(NULL);
    execvp(command[0], command);
    pm_fail(&err, PM_ENOTFOUND, "cannot run %s: %s", command[0], strerror(errno));
    return cmd_report_error(&err);
}
