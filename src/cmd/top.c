/*
 * top.c — `pyrometer top`: a live view of the functions a Python program
 * spends its time in, attached by PID or launched after `--`, refreshed
 * every second (like top, or py-spy top).
 *
 * Owns: counting own (the function is the leaf) and total (anywhere in the
 * stack, once per thread stack) samples per function, both by line and by
 * function, since the start (or the last reset) and over the last refresh
 * interval; the full-screen ncurses view and its keys; a plain-text table
 * every second when stdout is not a terminal.
 *
 * Everything runs in the sampler's per-sample callback, on the main thread:
 * count the sample, read the keyboard (non-blocking) every 50 ms, redraw
 * once a second or after a key; a non-zero return stops the loop.
 *
 * Invariant: the terminal is restored on every way out — q, Ctrl-C,
 * SIGTERM/SIGHUP (the stop flag ends the loop, then endwin), the target's
 * exit, errors, exit() from anywhere (atexit), and fatal signals (a handler
 * that only restores the saved termios and leaves the alternate screen,
 * then re-raises).  A launched program's stdin is /dev/null and its output
 * goes to a log file in $TMPDIR (default /tmp), named after exit, so it
 * cannot garble the screen or steal keys.
 *
 * Never reads target memory or parses ELF itself; frame strings are
 * interned in a struct profile (used only as an intern table).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#ifndef NCURSES_WIDECHAR
#define NCURSES_WIDECHAR 1
#endif
#include <curses.h>

#include "../profile/profile.h"
#include "../sample/sampler.h"
#include "../target/launch.h"
#include "../target/proc.h"
#include "cmd.h"

#define REFRESH_NS 1000000000ull   /* redraw once a second */
#define KEYS_NS 50000000ull        /* read the keyboard every 50 ms */
#define PLAIN_ROWS 20              /* rows per plain-text table */
#define SUMMARY_ROWS 10            /* rows printed after the target exited */

struct top_opts {
    double rate;
    pid_t pid;
    char **command;
    int idle, gil_only, native, nolineno, full_filenames;
};

static void top_usage(FILE *out)
{
    fprintf(out,
            "usage: pyrometer top [options] (-p PID | -- COMMAND [ARG...])\n\n"
            "A live view of the functions a Python program spends its time in, refreshed\n"
            "every second, without pausing it.\n\n"
            "  -p, --pid PID          attach to this running Python process\n"
            "  -r, --rate HZ          samples per second (default 100)\n"
            "  -i, --idle             count threads that are not running on a CPU too\n"
            "  -g, --gil              count only the thread holding the GIL\n"
            "  -n, --native           include C frames (extensions, builtins) under the Python\n"
            "                         line that called them\n"
            "      --nolineno         start with line numbers off (key l toggles)\n"
            "      --full-filenames   full paths instead of package-relative ones\n"
            "  -h, --help             this text\n\n"
            "Columns: %%Own and OwnTime count samples where the function was running\n"
            "itself (the innermost frame), %%Total and TotalTime samples where it was\n"
            "anywhere on the stack.  Percentages are of wall-clock time, like top's CPU%%:\n"
            "with several busy threads they can add up to more than 100%%.  Times are\n"
            "samples divided by the achieved rate.\n\n"
            "Keys: 1-4 (or F1-F4, < >) sort by a column; l line numbers on/off;\n"
            "w percentages since start / over the last second; r reset the counts;\n"
            "? or h help; q or Ctrl-C quit.\n\n"
            "A launched program reads /dev/null and writes to a log file in $TMPDIR\n"
            "(default /tmp), named when top exits.  When stdout is not a terminal, top\n"
            "prints a plain-text table (the %d hottest by %%Own) every second instead,\n"
            "until the target exits or it is interrupted.\n",
            PLAIN_ROWS);
}

static int parse_top_args(int argc, char **argv, struct top_opts *o)
{
    static const struct option longopts[] = {
        {"pid", required_argument, 0, 'p'},  {"rate", required_argument, 0, 'r'},
        {"idle", no_argument, 0, 'i'},       {"gil", no_argument, 0, 'g'},
        {"nolineno", no_argument, 0, 'L'},   {"full-filenames", no_argument, 0, 'A'},
        {"help", no_argument, 0, 'h'},       {"subprocesses", no_argument, 0, 's'},
        {"native", no_argument, 0, 'n'},     {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->rate = 100;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+p:r:ighsn", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (cmd_parse_pid(optarg, &o->pid) != 0)
                return cmd_usage_error("top", "invalid PID '%s'", optarg);
            break;
        case 'r':
            if (cmd_parse_positive(optarg, &o->rate) != 0 || o->rate > 100000)
                return cmd_usage_error("top", "invalid rate '%s' (Hz, up to 100000)", optarg);
            break;
        case 'i': o->idle = 1; break;
        case 'g': o->gil_only = 1; break;
        case 'L': o->nolineno = 1; break;
        case 'A': o->full_filenames = 1; break;
        case 'h': top_usage(stdout); return -2;
        case 'n': o->native = 1; break;
        case 's':
            return cmd_usage_error("top", "%s is not available in top yet",
                                   argv[optind - 1]);
        default:
            if (optopt && strchr("pr", optopt))
                return cmd_usage_error("top", "option '%s' needs a value", argv[optind - 1]);
            return cmd_usage_error("top", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        o->command = argv + optind;
    if (o->pid && o->command)
        return cmd_usage_error("top", "give either -p PID or a command, not both");
    if (!o->pid && !o->command)
        return cmd_usage_error("top", "nothing to watch: give -p PID or -- COMMAND");
    return 0;
}

/* ---- counting ------------------------------------------------------------ */

enum top_column { COL_OWN_PCT, COL_TOTAL_PCT, COL_OWN_TIME, COL_TOTAL_TIME, NCOLUMNS };
enum top_view { VIEW_LINE, VIEW_FUNCTION, NVIEWS };

static const char *const column_names[NCOLUMNS] = {"%Own", "%Total", "OwnTime", "TotalTime"};
static const int column_widths[NCOLUMNS] = {7, 8, 10, 11};

/* Per frame id of one view: counts since the start (or reset), in the
 * window being filled, and in the last complete window. */
struct fn_counts {
    uint64_t own, total;
    uint64_t win_own, win_total;
    uint64_t last_own, last_total;
    uint64_t seen;                 /* stamp of the last thread stack counted into total */
};

/* Sample-level statistics over one period. */
struct period {
    uint64_t start_ns, end_ns;     /* sampler clock */
    uint64_t errors_at_start;      /* sampler_result.errors when the period began */
    uint64_t errors;               /* errors during the period (when closed) */
    uint64_t samples;
    uint64_t thread_samples, active_threads;
    uint64_t gil_samples;          /* samples where some thread held the GIL */
};

struct top_state {
    const struct top_opts *opts;
    const struct sampler_result *res;   /* filled by sampler_run as it goes */
    struct profile *names;              /* intern table for frames only */
    struct fn_counts *counts[NVIEWS];   /* indexed by frame id */
    uint32_t cap;
    uint64_t stamp;
    struct period since, win, last;
    uint64_t now_ns;
    size_t threads_now, active_now;
    int failed;                         /* out of memory */

    /* display */
    int curses;                         /* 0: plain text to stdout */
    int column, view, window_mode, help, quit, write_failed;
    uint64_t next_draw_ns, next_keys_ns;
    char target[512];
    const char *version;
};

static int counts_reserve(struct top_state *ts, uint32_t n)
{
    if (n <= ts->cap)
        return 0;
    uint32_t cap = ts->cap ? ts->cap : 256;
    while (cap < n)
        cap *= 2;
    for (int v = 0; v < NVIEWS; v++) {
        struct fn_counts *c = realloc(ts->counts[v], (size_t)cap * sizeof *c);
        if (c == NULL)
            return -1;
        memset(c + ts->cap, 0, (size_t)(cap - ts->cap) * sizeof *c);
        ts->counts[v] = c;
    }
    ts->cap = cap;
    return 0;
}

static void period_begin(struct period *p, const struct top_state *ts)
{
    memset(p, 0, sizeof *p);
    p->start_ns = p->end_ns = ts->now_ns;
    p->errors_at_start = ts->res->errors;
}

static int keep_thread(const struct top_opts *o, const struct sampled_thread *t)
{
    return t->depth > 0 && (o->idle || t->active) && (!o->gil_only || t->owns_gil);
}

/* Count one sample into both views.  Returns -1 when out of memory. */
static int count_sample(struct top_state *ts, const struct sample *smp)
{
    int gil = 0;
    size_t active = 0;
    for (size_t i = 0; i < smp->nthreads; i++) {
        const struct sampled_thread *t = &smp->threads[i];
        active += t->active != 0;
        gil |= t->owns_gil;
        if (!keep_thread(ts->opts, t))
            continue;
        ts->stamp++;
        for (size_t f = 0; f < t->depth; f++) {
            const struct sampled_frame *fr = &t->frames[f];
            int native = fr->kind == SAMPLED_NATIVE;
            uint32_t kind = native ? PROFILE_FRAME_NATIVE : PROFILE_FRAME_PYTHON;
            for (int v = 0; v < NVIEWS; v++) {
                int line = v == VIEW_LINE && !native && fr->line > 0 ? fr->line : 0;
                uint32_t id = profile_frame(ts->names, fr->name ? fr->name : "?",
                                            fr->filename ? fr->filename : "",
                                            fr->short_filename ? fr->short_filename : "", line,
                                            kind);
                if (id == UINT32_MAX || counts_reserve(ts, id + 1) != 0)
                    return -1;
                struct fn_counts *c = &ts->counts[v][id];
                if (f == 0) {
                    c->own++;
                    c->win_own++;
                }
                if (c->seen != ts->stamp) {
                    c->seen = ts->stamp;
                    c->total++;
                    c->win_total++;
                }
            }
        }
    }
    struct period *periods[2] = {&ts->since, &ts->win};
    for (int k = 0; k < 2; k++) {
        periods[k]->samples++;
        periods[k]->thread_samples += smp->nthreads;
        periods[k]->active_threads += active;
        periods[k]->gil_samples += gil != 0;
        periods[k]->end_ns = smp->t_ns;
    }
    ts->threads_now = smp->nthreads;
    ts->active_now = active;
    return 0;
}

/* Close the window being filled: it becomes the last one. */
static void roll_window(struct top_state *ts)
{
    for (int v = 0; v < NVIEWS; v++)
        for (uint32_t id = 0; id < ts->cap; id++) {
            struct fn_counts *c = &ts->counts[v][id];
            c->last_own = c->win_own;
            c->last_total = c->win_total;
            c->win_own = c->win_total = 0;
        }
    ts->last = ts->win;
    ts->last.end_ns = ts->now_ns;
    ts->last.errors = ts->res->errors - ts->win.errors_at_start;
    period_begin(&ts->win, ts);
}

static void reset_counts(struct top_state *ts)
{
    for (int v = 0; v < NVIEWS; v++)
        if (ts->counts[v])
            memset(ts->counts[v], 0, (size_t)ts->cap * sizeof *ts->counts[v]);
    period_begin(&ts->since, ts);
    period_begin(&ts->win, ts);
    memset(&ts->last, 0, sizeof ts->last);
    ts->next_draw_ns = ts->now_ns + REFRESH_NS;  /* the next window is a whole one */
}

static uint64_t since_errors(const struct top_state *ts)
{
    return ts->res->errors - ts->since.errors_at_start;
}

static double period_seconds(const struct period *p)
{
    return p->end_ns > p->start_ns ? (double)(p->end_ns - p->start_ns) / 1e9 : 0;
}

static double share(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* ---- the table ------------------------------------------------------------ */

struct top_row {
    uint32_t frame;
    uint64_t own, total;           /* in the basis of the percentages */
    uint64_t own_all, total_all;   /* since start: the times */
    uint64_t key;                  /* the sorted column's value */
};

static int by_key_desc(const void *a, const void *b)
{
    const struct top_row *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? 1 : -1;
    if (x->total_all != y->total_all)
        return x->total_all < y->total_all ? 1 : -1;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

/* The rows of the current view, sorted by `column`; *n rows in a malloc'd
 * array (NULL with *n 0 when there are none or memory is short). */
static struct top_row *table_rows(const struct top_state *ts, int column, int window_mode,
                                  size_t *n)
{
    *n = 0;
    const struct fn_counts *c = ts->counts[ts->view];
    uint32_t nframes = ts->names->nframes < ts->cap ? ts->names->nframes : ts->cap;
    struct top_row *rows = nframes ? malloc((size_t)nframes * sizeof *rows) : NULL;
    if (rows == NULL)
        return NULL;
    for (uint32_t id = 0; id < nframes; id++) {
        if (c[id].total == 0)
            continue;
        struct top_row *r = &rows[(*n)++];
        r->frame = id;
        r->own = window_mode ? c[id].last_own : c[id].own;
        r->total = window_mode ? c[id].last_total : c[id].total;
        r->own_all = c[id].own;
        r->total_all = c[id].total;
        r->key = column == COL_OWN_PCT ? r->own : column == COL_TOTAL_PCT ? r->total
               : column == COL_OWN_TIME ? r->own_all : r->total_all;
    }
    qsort(rows, *n, sizeof *rows, by_key_desc);
    return rows;
}

static void format_seconds(double s, char *out, size_t cap)
{
    snprintf(out, cap, s < 100 ? "%.2fs" : s < 10000 ? "%.1fs" : "%.0fs", s);
}

/* The four numeric cells of a row, each right-aligned to its width. */
static void format_cells(const struct top_state *ts, const struct top_row *r, int window_mode,
                         char *out, size_t cap)
{
    const struct period *basis = window_mode ? &ts->last : &ts->since;
    double seconds_per_sample =
        ts->since.samples ? period_seconds(&ts->since) / (double)ts->since.samples : 0;
    char cells[NCOLUMNS][32];
    snprintf(cells[0], sizeof cells[0], "%.1f%%", share(r->own, basis->samples));
    snprintf(cells[1], sizeof cells[1], "%.1f%%", share(r->total, basis->samples));
    format_seconds((double)r->own_all * seconds_per_sample, cells[2], sizeof cells[2]);
    format_seconds((double)r->total_all * seconds_per_sample, cells[3], sizeof cells[3]);
    snprintf(out, cap, "%*s%*s%*s%*s", column_widths[0], cells[0], column_widths[1], cells[1],
             column_widths[2], cells[2], column_widths[3], cells[3]);
}

static const char *function_heading(const struct top_state *ts)
{
    return ts->view == VIEW_LINE ? "Function (file:line)" : "Function (file)";
}

static const char *threads_kept(const struct top_opts *o)
{
    return o->gil_only ? "the GIL holder" : o->idle ? "all threads" : "active threads";
}

/* The status lines shared by the screen and the plain-text table. */
static void status_lines(const struct top_state *ts, char lines[3][1024])
{
    const struct period *p = &ts->since;
    double secs = period_seconds(p);
    uint64_t errors = since_errors(ts);
    snprintf(lines[0], 1024, "pyrometer top  %s  (Python %s)", ts->target, ts->version);
    snprintf(lines[1], 1024,
             "Samples: %llu (%.1f Hz, asked %.0f)  Errors: %llu (%.2f%%)  Elapsed: %.1f s",
             (unsigned long long)p->samples, secs > 0 ? (double)p->samples / secs : 0.0,
             ts->opts->rate, (unsigned long long)errors,
             share(errors, p->thread_samples + errors), secs);
    snprintf(lines[2], 1024, "GIL: %.1f%%  Active: %.1f%%  Threads: %zu (%zu active)  Counting: %s",
             share(p->gil_samples, p->samples), share(p->active_threads, p->thread_samples),
             ts->threads_now, ts->active_now, threads_kept(ts->opts));
}

/* ---- the screen ----------------------------------------------------------- */

/* What the fatal-signal handler needs to put the terminal back. */
static struct {
    volatile sig_atomic_t on;      /* between newterm and endwin */
    int registered;                /* atexit and fatal handlers installed */
    struct termios saved[2];       /* stdin, stdout */
    int have_saved[2];
    char leave[128];               /* rmcup + cnorm: leave the alternate screen */
    size_t leave_len;
} screen;

static void screen_close(void)
{
    if (screen.on) {
        screen.on = 0;
        if (!isendwin())
            endwin();
    }
}

static void on_fatal_signal(int sig)
{
    if (screen.on) {
        ssize_t unused = write(STDOUT_FILENO, screen.leave, screen.leave_len);
        (void)unused;
        for (int fd = 0; fd < 2; fd++)
            if (screen.have_saved[fd])
                tcsetattr(fd, TCSANOW, &screen.saved[fd]);
    }
    raise(sig);  /* SA_RESETHAND: the default action now */
}

static void append_capability(const char *name)
{
    char *s = tigetstr(name);
    if (s == NULL || s == (char *)-1)
        return;
    size_t n = strlen(s);
    if (screen.leave_len + n + 2 < sizeof screen.leave) {
        memcpy(screen.leave + screen.leave_len, s, n);
        screen.leave_len += n;
    }
}

static int screen_open(struct pm_error *err)
{
    for (int fd = 0; fd < 2; fd++)
        screen.have_saved[fd] = isatty(fd) && tcgetattr(fd, &screen.saved[fd]) == 0;
    if (!screen.registered) {
        atexit(screen_close);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sa.sa_flags = (int)SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
            sigaction(fatal[i], &sa, NULL);
        screen.registered = 1;
    }
    const char *term = getenv("TERM");
    if (newterm(NULL, stdout, stdin) == NULL)
        return pm_fail(err, PM_EUSAGE, "cannot drive this terminal (TERM=%s)",
                       term && *term ? term : "unset");
    screen.on = 1;
    screen.leave_len = 0;
    append_capability("rmcup");
    append_capability("cnorm");
    screen.leave[screen.leave_len++] = '\r';
    screen.leave[screen.leave_len++] = '\n';
    cbreak();        /* keys at once; Ctrl-C still signals */
    noecho();
    nodelay(stdscr, TRUE);
    keypad(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    return 0;
}

static int utf8_locale;

/* Draw s at (y, x), clipped to the screen's width; bytes that do not
 * decode and control characters show as '?'. */
static void put_text(int y, int x, const char *s)
{
    int width = COLS - x;
    if (y < 0 || y >= LINES || width <= 0)
        return;
    wchar_t buf[512];
    int n = 0, used = 0;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t len = strlen(s);
    for (size_t i = 0; i < len && n < (int)(sizeof buf / sizeof buf[0]);) {
        wchar_t wc;
        size_t k = utf8_locale || (unsigned char)s[i] < 0x80
                       ? mbrtowc(&wc, s + i, len - i, &st) : (size_t)-1;
        int w;
        if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
            memset(&st, 0, sizeof st);
            wc = L'?';
            k = 1;
            /* skip the rest of a multi-byte sequence we cannot show */
            while (!utf8_locale && i + k < len && ((unsigned char)s[i + k] & 0xC0) == 0x80)
                k++;
        }
        w = wcwidth(wc);
        if (w < 0) {
            wc = L'?';
            w = 1;
        }
        if (used + w > width)
            break;
        buf[n++] = wc;
        used += w;
        i += k;
    }
    mvaddnwstr(y, x, buf, n);
}

static void draw_help(int y)
{
    static const char *const help[] = {
        "Keys",
        "",
        "  1 2 3 4, F1-F4   sort by %Own, %Total, OwnTime, TotalTime",
        "  < >              sort by the column to the left / right",
        "  l                line numbers on / off (off: one row per function)",
        "  w                percentages since start / over the last second",
        "  r                reset the counts",
        "  ? h              this help (any key closes it)",
        "  q Ctrl-C         quit",
        "",
        "Own: the function itself was running (innermost frame).",
        "Total: the function was anywhere on the stack.",
        "Percentages are of wall-clock time; times are samples / achieved rate.",
    };
    for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) {
        if (i == 0)
            attron(A_BOLD);
        put_text(y + (int)i, 2, help[i]);
        if (i == 0)
            attroff(A_BOLD);
    }
}

static void draw_screen(struct top_state *ts)
{
    erase();
    char status[3][1024];
    status_lines(ts, status);
    attron(A_BOLD);
    put_text(0, 0, status[0]);
    attroff(A_BOLD);
    put_text(1, 0, status[1]);
    put_text(2, 0, status[2]);
    char line[512];
    if (ts->window_mode)
        snprintf(line, sizeof line, "Sorted by %s  Percentages: last %.1f s (%llu samples)  Lines: %s",
                 column_names[ts->column], period_seconds(&ts->last),
                 (unsigned long long)ts->last.samples, ts->view == VIEW_LINE ? "on" : "off");
    else
        snprintf(line, sizeof line, "Sorted by %s  Percentages: since start  Lines: %s",
                 column_names[ts->column], ts->view == VIEW_LINE ? "on" : "off");
    put_text(3, 0, line);

    int y = 5;
    if (ts->help) {
        draw_help(y);
    } else {
        int x = 0;
        for (int col = 0; col < NCOLUMNS; col++) {
            snprintf(line, sizeof line, "%*s", column_widths[col], column_names[col]);
            attron(col == ts->column ? A_REVERSE | A_BOLD : A_BOLD);
            put_text(y, x, line);
            attroff(A_REVERSE | A_BOLD);
            x += column_widths[col];
        }
        attron(A_BOLD);
        put_text(y, x + 2, function_heading(ts));
        attroff(A_BOLD);
        y++;
        size_t n;
        struct top_row *rows = table_rows(ts, ts->column, ts->window_mode, &n);
        if (n == 0)
            put_text(y, 2, ts->since.samples ? "(no samples of the counted threads yet)"
                                             : "(waiting for samples)");
        for (size_t i = 0; i < n && y < LINES - 1; i++, y++) {
            format_cells(ts, &rows[i], ts->window_mode, line, sizeof line);
            put_text(y, 0, line);
            char label[1024];
            profile_frame_label(ts->names, rows[i].frame, ts->opts->full_filenames, label,
                                sizeof label);
            put_text(y, (int)strlen(line) + 2, label);
        }
        free(rows);
    }
    attron(A_REVERSE);
    snprintf(line, sizeof line, " %-*s", COLS > 1 ? COLS - 1 : 0,
             "1-4 sort  l lines  w window  r reset  ? help  q quit");
    put_text(LINES - 1, 0, line);
    attroff(A_REVERSE);
    refresh();
}

/* Read every pending key; returns 1 when something changed on screen. */
static int read_keys(struct top_state *ts)
{
    int changed = 0, key;
    while ((key = getch()) != ERR) {
        changed = 1;
        if (ts->help) {
            ts->help = 0;
            if (key != 'q' && key != 'Q')
                continue;
        }
        switch (key) {
        case 'q': case 'Q': ts->quit = 1; break;
        case '1': case '2': case '3': case '4': ts->column = key - '1'; break;
        case '<': case KEY_LEFT: ts->column = (ts->column + NCOLUMNS - 1) % NCOLUMNS; break;
        case '>': case KEY_RIGHT: ts->column = (ts->column + 1) % NCOLUMNS; break;
        case 'l': case 'L': ts->view = ts->view == VIEW_LINE ? VIEW_FUNCTION : VIEW_LINE; break;
        case 'w': case 'W': ts->window_mode = !ts->window_mode; break;
        case 'r': case 'R': reset_counts(ts); break;
        case '?': case 'h': case 'H': ts->help = 1; break;
        default:
            if (key >= KEY_F(1) && key <= KEY_F(NCOLUMNS))
                ts->column = key - KEY_F(1);
            break;  /* KEY_RESIZE and the rest: just redraw */
        }
    }
    return changed;
}

/* ---- plain text (stdout is not a terminal) --------------------------------- */

static void print_table(const struct top_state *ts, FILE *out, size_t limit, int column)
{
    char line[512];
    fprintf(out, " ");
    for (int col = 0; col < NCOLUMNS; col++)
        fprintf(out, "%*s", column_widths[col], column_names[col]);
    fprintf(out, "  %s\n", function_heading(ts));
    size_t n;
    struct top_row *rows = table_rows(ts, column, 0, &n);
    if (n == 0)
        fprintf(out, "  (no samples)\n");
    for (size_t i = 0; i < n && i < limit; i++) {
        format_cells(ts, &rows[i], 0, line, sizeof line);
        char label[1024];
        profile_frame_label(ts->names, rows[i].frame, ts->opts->full_filenames, label,
                            sizeof label);
        fprintf(out, " %s  %s\n", line, label);
    }
    free(rows);
}

static void print_plain(struct top_state *ts)
{
    char status[3][1024];
    status_lines(ts, status);
    printf("%s\n%s\n%s\n", status[0], status[1], status[2]);
    print_table(ts, stdout, PLAIN_ROWS, COL_OWN_PCT);
    printf("\n");
    if (fflush(stdout) != 0 || ferror(stdout))
        ts->write_failed = errno ? errno : EIO;
}

/* ---- the loop ------------------------------------------------------------- */

static int on_sample(const struct sample *smp, void *ctx)
{
    struct top_state *ts = ctx;
    ts->now_ns = smp->t_ns;
    if (count_sample(ts, smp) != 0) {
        ts->failed = 1;
        return 1;
    }
    int redraw = 0;
    if (ts->curses && ts->now_ns >= ts->next_keys_ns) {
        ts->next_keys_ns = ts->now_ns + KEYS_NS;
        redraw = read_keys(ts);
        if (ts->quit)
            return 1;
    }
    if (ts->now_ns >= ts->next_draw_ns) {
        ts->next_draw_ns = ts->now_ns + REFRESH_NS;
        roll_window(ts);
        if (!ts->curses) {
            print_plain(ts);
            return ts->write_failed != 0;
        }
        redraw = 1;
    }
    if (redraw)
        draw_screen(ts);
    return 0;
}

/* ---- the command ----------------------------------------------------------- */

/* A log file for the launched program's output: "$TMPDIR/pyrometer-top-XXXXXX.log". */
static int open_program_log(char *path, size_t cap, struct pm_error *err)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    if ((size_t)snprintf(path, cap, "%s/pyrometer-top-XXXXXX.log", dir) >= cap)
        return pm_fail(err, PM_EOUTPUT, "TMPDIR is too long");
    int fd = mkostemps(path, 4, O_CLOEXEC);
    if (fd < 0)
        return pm_fail(err, PM_EOUTPUT, "cannot create a log file in %s: %s", dir,
                       strerror(errno));
    return fd;
}

static void describe_target(struct top_state *ts, pid_t pid)
{
    char cmdline[400];
    proc_cmdline(pid, cmdline, sizeof cmdline);
    snprintf(ts->target, sizeof ts->target, "pid %d: %s", (int)pid,
             cmdline[0] ? cmdline : "?");
}

static void print_summary(const struct top_state *ts, const struct sampler_result *res,
                          pid_t pid)
{
    double secs = (double)res->elapsed_ns / 1e9;
    uint64_t attempts = res->thread_samples + res->errors;
    fprintf(stderr,
            "pyrometer: top watched pid %d (Python %s) for %.1f s: %llu samples (%.1f Hz, "
            "asked %.0f), %llu errors (%.2f%%)\n",
            (int)pid, ts->version, secs, (unsigned long long)res->samples,
            secs > 0 ? (double)res->samples / secs : 0.0, ts->opts->rate,
            (unsigned long long)res->errors, share(res->errors, attempts));
}

int cmd_top(int argc, char **argv)
{
    struct top_opts o;
    int rc = parse_top_args(argc, argv, &o);
    if (rc == -2)
        return 0;
    if (rc != 0)
        return rc;

    static volatile sig_atomic_t stop;
    cmd_install_stop_handlers(&stop);
    struct pm_error err = {0};
    int curses = isatty(STDOUT_FILENO);

    char log_path[4096] = "";
    int log_fd = -1;
    pid_t pid = o.pid, child = 0;
    if (o.command) {
        log_fd = open_program_log(log_path, sizeof log_path, &err);
        if (log_fd < 0)
            return cmd_report_error(&err);
        if (launch_start_redirected(o.command, log_fd, &child, &err) != 0) {
            close(log_fd);
            unlink(log_path);
            return cmd_report_error(&err);
        }
        close(log_fd);
        pid = child;
        if (!curses)
            fprintf(stderr, "pyrometer: the program's output goes to %s\n", log_path);
    }

    struct top_state ts;
    memset(&ts, 0, sizeof ts);
    ts.opts = &o;
    ts.curses = curses;
    ts.view = o.nolineno ? VIEW_FUNCTION : VIEW_LINE;
    ts.next_draw_ns = REFRESH_NS;
    struct sampler_result res;
    memset(&res, 0, sizeof res);
    ts.res = &res;
    struct py_process *py = NULL;
    struct sampler *sampler = NULL;
    int exit_code = 0, sampled = 0;

    ts.names = profile_new();
    if (ts.names == NULL) {
        pm_fail(&err, PM_ENOMEM, "out of memory");
        goto fail;
    }
    if (cmd_attach(pid, child, 10.0, &py, &err) != 0)
        goto fail;
    ts.version = py_get_version(py)->text;
    describe_target(&ts, pid);
    sampler = sampler_new(py);
    if (sampler == NULL) {
        pm_fail(&err, PM_ENOMEM, "out of memory");
        goto fail;
    }
    if (o.native && sampler_enable_native(sampler, o.idle, &err) != 0)
        goto fail;
    if (curses) {
        utf8_locale = setlocale(LC_CTYPE, "") != NULL &&
                      strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
        if (screen_open(&err) != 0)
            goto fail;
        draw_screen(&ts);
    }
    struct sampler_config cfg = {
        .rate_hz = o.rate,
        .stop = &stop,
        .child = child,
        .progress = 0,
    };
    rc = sampler_run(sampler, &cfg, on_sample, &ts, &res, &err);
    screen_close();
    sampled = 1;
    if (rc != 0)
        goto fail;
    if (ts.failed) {
        pm_fail(&err, PM_ENOMEM, "out of memory while counting samples");
        goto fail;
    }
    if (ts.write_failed && ts.write_failed != EPIPE) {
        pm_fail(&err, PM_EOUTPUT, "cannot write to stdout: %s", strerror(ts.write_failed));
        goto fail;
    }

    if (res.target_exited) {
        if (child) {
            if (res.child_status_valid) {  /* else stopped and described below */
                char how[128];
                launch_describe_status(res.child_status, how, sizeof how);
                fprintf(stderr, "pyrometer: the program %s\n", how);
            }
        } else {
            fprintf(stderr, "pyrometer: process %d exited\n", (int)pid);
        }
        if (ts.since.samples) {
            fprintf(stderr, "pyrometer: hottest functions:\n");
            print_table(&ts, stderr, SUMMARY_ROWS, ts.column);
        }
    }
    print_summary(&ts, &res, pid);
    goto done;

fail:
    screen_close();
    exit_code = cmd_report_error(&err);
done:
    if (child) {
        if (!res.child_status_valid) {
            int status = cmd_stop_child(child, sampled && res.stopped_by_signal && cmd_stop_signal()
                                                   ? cmd_stop_signal() : SIGINT);
            if (exit_code == 0) {
                char how[128];
                launch_describe_status(status, how, sizeof how);
                fprintf(stderr, "pyrometer: the program %s\n", how);
            }
        }
        struct stat st;
        if (stat(log_path, &st) == 0 && st.st_size == 0)
            unlink(log_path);
        else if (log_path[0])
            fprintf(stderr, "pyrometer: the program's output is in %s\n", log_path);
    }
    sampler_free(sampler);
    py_detach(py);
    profile_free(ts.names);
    for (int v = 0; v < NVIEWS; v++)
        free(ts.counts[v]);
    return exit_code;
}
