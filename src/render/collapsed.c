/*
 * collapsed.c — the "raw" output: collapsed stacks, one line per distinct
 * stack, "root;...;leaf COUNT", the input format of flamegraph.pl, inferno
 * and speedscope.
 *
 * Owns the sanitising that keeps the format parseable: a ';' inside a label
 * becomes ':', a line break becomes a space.  Stacks of different threads
 * with the same labels are merged into one line, and lines are sorted
 * bytewise so the output is deterministic.
 *
 * Sees only the aggregated profile; never reads process memory, never prints
 * to the terminal; writes only to the FILE it is given.
 */
#include "render.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct collapsed_line {
    char *text;  /* "root;...;leaf" */
    uint64_t count;
};

/* ';' separates frames: a label's own becomes ':' (render_frame_label has
 * made newlines spaces already). */
static void sanitise_label(char *label)
{
    for (char *c = label; *c; c++)
        if (*c == ';')
            *c = ':';
}

static int compare_lines(const void *a, const void *b)
{
    const struct collapsed_line *x = a, *y = b;
    return strcmp(x->text, y->text);
}

/* Labels of every frame, sanitised; NULL when out of memory. */
static char **collapsed_labels(const struct profile *p, int full_filenames)
{
    char **labels = render_frame_labels(p, full_filenames);
    for (uint32_t i = 0; labels != NULL && i < p->nframes; i++)
        sanitise_label(labels[i]);
    return labels;
}

/* Join the labels of stack `s` with ';' into a new string. */
static char *join_stack(const struct profile *p, const struct profile_stack *s,
                        char *const *labels)
{
    const uint32_t *frames = profile_stack_frames(p, s);
    size_t len = 0;
    for (uint32_t i = 0; i < s->depth; i++)
        len += strlen(labels[frames[i]]) + 1;
    char *text = malloc(len + 1);
    if (text == NULL)
        return NULL;
    size_t at = 0;
    for (uint32_t i = 0; i < s->depth; i++) {
        if (i > 0)
            text[at++] = ';';
        size_t n = strlen(labels[frames[i]]);
        memcpy(text + at, labels[frames[i]], n);
        at += n;
    }
    text[at] = '\0';
    return text;
}

int render_collapsed(const struct profile *p, const struct render_opts *o, FILE *out,
                     struct pm_error *err)
{
    int full_filenames = o ? o->full_filenames : 0;
    char **labels = collapsed_labels(p, full_filenames);
    struct collapsed_line *lines = calloc(p->nstacks ? p->nstacks : 1, sizeof *lines);
    size_t nlines = 0;
    int rc = -1;
    if (labels == NULL || lines == NULL) {
        pm_fail(err, PM_ENOMEM, "out of memory rendering collapsed stacks");
        goto done;
    }

    for (uint32_t i = 0; i < p->nstacks; i++) {
        const struct profile_stack *s = &p->stacks[i];
        if (s->count == 0 || s->depth == 0)
            continue;
        lines[nlines].text = join_stack(p, s, labels);
        if (lines[nlines].text == NULL) {
            pm_fail(err, PM_ENOMEM, "out of memory rendering collapsed stacks");
            goto done;
        }
        lines[nlines++].count = s->count;
    }
    qsort(lines, nlines, sizeof *lines, compare_lines);

    for (size_t i = 0; i < nlines;) {
        uint64_t count = lines[i].count;
        size_t next = i + 1;
        while (next < nlines && strcmp(lines[next].text, lines[i].text) == 0)
            count += lines[next++].count;
        if (fprintf(out, "%s %" PRIu64 "\n", lines[i].text, count) < 0)
            break;  /* reported by render_finish */
        i = next;
    }
    rc = render_finish(out, "collapsed", err);

done:
    for (size_t i = 0; i < nlines; i++)
        free(lines[i].text);
    free(lines);
    render_free_labels(labels, labels ? p->nframes : 0);
    return rc;
}
