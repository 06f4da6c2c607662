/*
 * render.c — the table of output formats (names, default extensions), the
 * dispatch from a format to its renderer, and the small helpers every
 * renderer shares: untruncated frame labels, UTF-8 cleaning, and turning
 * write errors into PM_EOUTPUT.
 *
 * Never formats a profile itself (each format has its own file), never reads
 * process memory, never prints to the terminal.
 */
#include "render.h"
#include "../common/text.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct format_entry {
    enum render_format format;
    const char *name;
    const char *ext;
};

static const struct format_entry format_table[] = {
    { RENDER_FLAMEGRAPH, "flamegraph", "svg" },
    { RENDER_SPEEDSCOPE, "speedscope", "speedscope.json" },
    { RENDER_RAW, "raw", "txt" },
    { RENDER_PPROF, "pprof", "pb.gz" },
    { RENDER_CHROMETRACE, "chrometrace", "trace.json" },
    { RENDER_PSTATS, "pstats", "prof" },
};

static const struct format_entry *format_lookup(enum render_format f)
{
    for (size_t i = 0; i < sizeof format_table / sizeof format_table[0]; i++)
        if (format_table[i].format == f)
            return &format_table[i];
    return NULL;
}

int render_format_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < sizeof format_table / sizeof format_table[0]; i++)
        if (strcmp(format_table[i].name, name) == 0)
            return (int)format_table[i].format;
    return -1;
}

const char *render_format_name(enum render_format f)
{
    const struct format_entry *e = format_lookup(f);
    return e ? e->name : "unknown";
}

const char *render_format_ext(enum render_format f)
{
    const struct format_entry *e = format_lookup(f);
    return e ? e->ext : "out";
}

int render_profile(enum render_format f, const struct profile *p,
                   const struct render_opts *o, FILE *out, struct pm_error *err)
{
    static const struct render_opts default_opts;
    if (o == NULL)
        o = &default_opts;
    switch (f) {
    case RENDER_FLAMEGRAPH: return render_flamegraph(p, o, out, err);
    case RENDER_SPEEDSCOPE: return render_speedscope(p, o, out, err);
    case RENDER_RAW:        return render_collapsed(p, o, out, err);
    case RENDER_PPROF:      return render_pprof(p, o, out, err);
    case RENDER_CHROMETRACE: return render_chrometrace(p, o, out, err);
    case RENDER_PSTATS:     return render_pstats(p, o, out, err);
    }
    return pm_fail(err, PM_EINTERNAL, "unknown output format %d", (int)f);
}

/* Length of the valid UTF-8 sequence starting at s (which holds `avail`
 * bytes), or 0 when the bytes there are not valid UTF-8. */
static size_t utf8_sequence_length(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t min, cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, min = 0x80, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, min = 0x800, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

char *render_utf8_clean(const char *s)
{
    static const char replacement[] = "\xef\xbf\xbd";  /* U+FFFD */
    size_t n = strlen(s);
    /* Each invalid byte becomes 3 bytes at most. */
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *clean = malloc(3 * n + 1);
    if (clean == NULL)
        return NULL;
    const unsigned char *in = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t len = utf8_sequence_length(in + i, n - i);
        if (len == 0) {
            memcpy(clean + o, replacement, 3);
            o += 3;
            i += 1;
        } else {
            memcpy(clean + o, in + i, len);
            o += len;
            i += len;
        }
    }
    clean[o] = '\0';
    return clean;
}

char *render_frame_label(const struct profile *p, uint32_t frame, int full_filenames)
{
    size_t cap = 32;  /* " (", ":", ")", a line number, NUL */
    if (frame < p->nframes) {
        const struct profile_frame *f = &p->frames[frame];
        cap += strlen(profile_str(p, f->name)) + strlen(profile_str(p, f->filename)) +
               strlen(profile_str(p, f->short_file));
    }
    char *raw = malloc(cap);
    if (raw == NULL)
        return NULL;
    profile_frame_label(p, frame, full_filenames, raw, cap);
    char *clean = render_utf8_clean(raw);
    free(raw);
    /* a control character (a newline in a code object's file name, say)
     * would break a collapsed line or a table row, or reach the terminal */
    if (clean)
        text_one_line(clean);
    return clean;
}

int render_finish(FILE *out, const char *what, struct pm_error *err)
{
    if (fflush(out) != 0 || ferror(out)) {
        int saved = errno;
        return pm_fail(err, PM_EOUTPUT, "writing %s output: %s", what,
                       saved ? strerror(saved) : "write error");
    }
    return 0;
}

void render_free_labels(char **labels, uint32_t n)
{
    if (labels == NULL)
        return;
    for (uint32_t i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
}

char **render_frame_labels(const struct profile *p, int full_filenames)
{
    char **labels = calloc(p->nframes ? p->nframes : 1, sizeof *labels);
    if (labels == NULL)
        return NULL;
    for (uint32_t i = 0; i < p->nframes; i++) {
        labels[i] = render_frame_label(p, i, full_filenames);
        if (labels[i] == NULL) {
            render_free_labels(labels, i);
            return NULL;
        }
    }
    return labels;
}

/* Runs grouped by thread, each group in timeline order: the runs of thread t
 * are run_ids[first[t] .. first[t + 1]).  Returns 0 or -1 (out of memory). */
int render_runs_by_thread(const struct profile *p, size_t **run_ids_out, size_t **first_out)
{
    size_t *first = calloc((size_t)p->nthreads + 1, sizeof *first);
    size_t *run_ids = malloc((p->nruns ? p->nruns : 1) * sizeof *run_ids);
    size_t *fill = calloc((size_t)p->nthreads + 1, sizeof *fill);
    if (first == NULL || run_ids == NULL || fill == NULL) {
        free(first);
        free(run_ids);
        free(fill);
        return -1;
    }
    for (size_t i = 0; i < p->nruns; i++)
        first[p->runs[i].thread + 1]++;
    for (uint32_t t = 0; t < p->nthreads; t++)
        first[t + 1] += first[t];
    memcpy(fill, first, ((size_t)p->nthreads + 1) * sizeof *fill);
    for (size_t i = 0; i < p->nruns; i++)
        run_ids[fill[p->runs[i].thread]++] = i;
    free(fill);
    *run_ids_out = run_ids;
    *first_out = first;
    return 0;
}

int render_needs_timeline(enum render_format format)
{
    return format == RENDER_SPEEDSCOPE || format == RENDER_CHROMETRACE;
}
