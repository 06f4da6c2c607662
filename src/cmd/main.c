/*
 * main.c — pyrometer's entry point: finds the subcommand and calls it.
 * Nothing else lives here; every subcommand has its own file in cmd/.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"record", cmd_record, "sample a Python program and write a profile (flame graph, ...)"},
    {"top", cmd_top, "a live view of the functions a Python program spends its time in"},
    {"dump", cmd_dump, "print the current stack of every thread of a Python process"},
    {"heap", cmd_heap, "count the live objects of a Python process by type; --diff: what grew"},
    {"mem", cmd_mem, "record a program's allocations (mem run) and show peak, leaks (mem report)"},
    {"run", cmd_run, "run a command with the in-process agent on (requests, SQL, N+1)"},
    {"requests", cmd_requests, "per-endpoint latency, queries and N+1 findings the agent saw"},
};

static void usage(FILE *out)
{
    fprintf(out, "pyrometer %s — why is this Python slow?\n\n"
                 "usage: pyrometer <command> [options] (-p PID | -- COMMAND [ARG...])\n\n"
                 "commands:\n", PYROMETER_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'pyrometer <command> --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "pyrometer: error: no command given (try: pyrometer --help)\n");
        return 1;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("pyrometer %s\n", PYROMETER_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "pyrometer: error: unknown command '%s' (see: pyrometer --help)\n", argv[1]);
    return 1;
}
