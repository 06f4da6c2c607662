/*
 * flamegraph.c — the default output: a self-contained interactive SVG flame
 * graph (no external resources; opens in any browser).
 *
 * How it is made: the stacks of all threads are merged into one call tree
 * (a node per distinct path from the outermost frame; a hash of
 * (parent, frame) finds children in constant time), children are ordered by
 * label, and the tree is laid out left to right with widths proportional to
 * samples, root at the bottom.  Nodes narrower than MIN_FRAME_PX at the
 * default width are not drawn (their whole subtree is counted in a note).
 *
 * What the file does in a browser (the embedded script): hovering a frame
 * shows "function (file:line) — N samples (P%)" in a details line (each frame
 * also carries a <title> tooltip); clicking a frame zooms to it; "Reset zoom"
 * or a click on the root undoes it; "Search" (or Ctrl-F, '/') highlights the
 * frames whose label matches a regular expression and shows the share of
 * samples they cover; Escape clears both.  The script reads everything it
 * needs from the frames' attributes, so the SVG stays meaningful without it.
 *
 * Owns XML escaping of everything it writes (profile strings are UTF-8 and
 * stay UTF-8; characters XML forbids are replaced).  Sees only the aggregated
 * profile; never reads process memory, never prints to the terminal; writes
 * only to the FILE it is given.
 */
#include "render.h"

#include <inttypes.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

/* Geometry, in SVG pixels. */
#define IMAGE_WIDTH 1200
#define PLOT_X 10
#define PLOT_WIDTH (IMAGE_WIDTH - 2 * PLOT_X)
#define FRAME_HEIGHT 16        /* row pitch; the rect is one pixel shorter */
#define FRAMES_TOP 76          /* below the title, subtitle and controls */
#define FOOTER_HEIGHT 44       /* details line and notes */
#define MIN_FRAME_PX 0.1
#define FONT_PX 12
#define CHAR_WIDTH_PX 7.25     /* advance of a 12 px monospace glyph */
#define TEXT_PAD_PX 3
#define TITLE_MAX_CHARS 110

#define NO_NODE UINT32_MAX
#define ROOT_NODE 0

/* ---------------------------------------------------------------------------
 * The merged call tree.
 * ------------------------------------------------------------------------- */

struct tree_node {
    uint32_t frame;   /* profile frame id; NO_NODE for the root ("all") */
    uint32_t parent;
    uint32_t depth;   /* root 0 */
    uint64_t total;   /* samples in this node and below */
};

struct call_tree {
    struct tree_node *nodes;
    size_t nnodes, cap;
    uint32_t *child_slots;  /* hash (parent, frame) -> node; NO_NODE when free */
    size_t slot_cap;        /* power of two */
};

static uint32_t child_hash(uint32_t parent, uint32_t frame)
{
    uint64_t x = ((uint64_t)parent << 32) | frame;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static int tree_grow_slots(struct call_tree *t)
{
    size_t cap = t->slot_cap ? t->slot_cap * 2 : 1024;
    uint32_t *slots = malloc(cap * sizeof *slots);
    if (slots == NULL)
        return -1;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t i = 1; i < t->nnodes; i++) {  /* the root is never a child */
        size_t s = child_hash(t->nodes[i].parent, t->nodes[i].frame) & (cap - 1);
        while (slots[s] != NO_NODE)
            s = (s + 1) & (cap - 1);
        slots[s] = (uint32_t)i;
    }
    free(t->child_slots);
    t->child_slots = slots;
    t->slot_cap = cap;
    return 0;
}

/* The child of `parent` for `frame`, created when missing; NO_NODE when out
 * of memory. */
static uint32_t tree_child(struct call_tree *t, uint32_t parent, uint32_t frame)
{
    size_t mask = t->slot_cap - 1;
    size_t s = child_hash(parent, frame) & mask;
    for (; t->child_slots[s] != NO_NODE; s = (s + 1) & mask) {
        const struct tree_node *n = &t->nodes[t->child_slots[s]];
        if (n->parent == parent && n->frame == frame)
            return t->child_slots[s];
    }
    if (t->nnodes >= NO_NODE - 1)
        return NO_NODE;
    if (t->nnodes == t->cap) {
        size_t cap = t->cap * 2;
        struct tree_node *nodes = realloc(t->nodes, cap * sizeof *nodes);
        if (nodes == NULL)
            return NO_NODE;
        t->nodes = nodes;
        t->cap = cap;
    }
    uint32_t id = (uint32_t)t->nnodes++;
    t->nodes[id] = (struct tree_node){ frame, parent, t->nodes[parent].depth + 1, 0 };
    if (t->nnodes * 2 > t->slot_cap) {  /* keep the load factor under 1/2 */
        if (tree_grow_slots(t) != 0)
            return NO_NODE;
    } else {
        t->child_slots[s] = id;
    }
    return id;
}

static void tree_free(struct call_tree *t)
{
    free(t->nodes);
    free(t->child_slots);
}

/* Merge every stack of every thread into `t`.  Returns 0 or -1 (no memory). */
static int tree_build(struct call_tree *t, const struct profile *p)
{
    memset(t, 0, sizeof *t);
    t->cap = 1024;
    t->nodes = malloc(t->cap * sizeof *t->nodes);
    if (t->nodes == NULL || tree_grow_slots(t) != 0)
        return -1;
    t->nodes[ROOT_NODE] = (struct tree_node){ NO_NODE, NO_NODE, 0, 0 };
    t->nnodes = 1;
    for (uint32_t i = 0; i < p->nstacks; i++) {
        const struct profile_stack *s = &p->stacks[i];
        if (s->count == 0)
            continue;
        const uint32_t *frames = profile_stack_frames(p, s);
        uint32_t node = ROOT_NODE;
        t->nodes[ROOT_NODE].total += s->count;
        for (uint32_t d = 0; d < s->depth; d++) {
            node = tree_child(t, node, frames[d]);
            if (node == NO_NODE)
                return -1;
            t->nodes[node].total += s->count;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Layout: children ordered by label, x offsets in samples, pruning.
 * ------------------------------------------------------------------------- */

struct child_ref {
    uint32_t rank;  /* position of the child's frame in label order */
    uint32_t node;
};

struct placed_node {
    uint32_t node;
    uint64_t offset;  /* samples to the left of the node */
};

struct layout {
    struct placed_node *placed;  /* drawn nodes, parents before children */
    size_t nplaced;
    uint32_t max_depth;
    uint64_t pruned;             /* nodes not drawn */
};

struct label_ref {
    const char *label;
    uint32_t frame;
};

static int compare_label_refs(const void *a, const void *b)
{
    const struct label_ref *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    return c ? c : (x->frame > y->frame) - (x->frame < y->frame);
}

static int compare_child_refs(const void *a, const void *b)
{
    const struct child_ref *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* rank[frame]: the frame's position when frames are sorted by label. */
static uint32_t *rank_frames_by_label(const struct profile *p, char *const *labels)
{
    uint32_t *rank = malloc((p->nframes ? p->nframes : 1) * sizeof *rank);
    struct label_ref *refs = malloc((p->nframes ? p->nframes : 1) * sizeof *refs);
    if (rank == NULL || refs == NULL) {
        free(rank);
        free(refs);
        return NULL;
    }
    for (uint32_t i = 0; i < p->nframes; i++)
        refs[i] = (struct label_ref){ labels[i], i };
    qsort(refs, p->nframes, sizeof *refs, compare_label_refs);
    for (uint32_t i = 0; i < p->nframes; i++)
        rank[refs[i].frame] = i;
    free(refs);
    return rank;
}

/* Lay out the tree.  Returns 0 or -1 (no memory). */
static int layout_tree(const struct call_tree *t, const uint32_t *rank, struct layout *out)
{
    size_t n = t->nnodes;
    size_t *first_child = calloc(n + 1, sizeof *first_child);
    size_t *fill = malloc((n + 1) * sizeof *fill);
    struct child_ref *children = malloc(n * sizeof *children);
    uint64_t *subtree_size = malloc(n * sizeof *subtree_size);
    struct placed_node *todo = malloc(n * sizeof *todo);
    out->placed = malloc(n * sizeof *out->placed);
    out->nplaced = 0;
    out->max_depth = 0;
    out->pruned = 0;
    int rc = -1;
    if (!first_child || !fill || !children || !subtree_size || !todo || !out->placed)
        goto done;

    /* Children of node i: children[first_child[i] .. first_child[i + 1]). */
    for (size_t i = 1; i < n; i++)
        first_child[t->nodes[i].parent + 1]++;
    for (size_t i = 0; i < n; i++)
        first_child[i + 1] += first_child[i];
    memcpy(fill, first_child, (n + 1) * sizeof *fill);
    for (size_t i = 1; i < n; i++)
        children[fill[t->nodes[i].parent]++] =
            (struct child_ref){ rank[t->nodes[i].frame], (uint32_t)i };
    for (size_t i = 0; i < n; i++)
        qsort(children + first_child[i], first_child[i + 1] - first_child[i],
              sizeof *children, compare_child_refs);

    /* A child is always created after its parent, so one backward sweep
     * accumulates subtree sizes. */
    for (size_t i = 0; i < n; i++)
        subtree_size[i] = 1;
    for (size_t i = n - 1; i >= 1; i--)
        subtree_size[t->nodes[i].parent] += subtree_size[i];

    /* Depth-first, pushing children right to left so they pop left to right. */
    uint64_t total = t->nodes[ROOT_NODE].total;
    double min_samples = MIN_FRAME_PX * (double)total / PLOT_WIDTH;
    size_t ntodo = 0;
    todo[ntodo++] = (struct placed_node){ ROOT_NODE, 0 };
    while (ntodo > 0) {
        struct placed_node here = todo[--ntodo];
        const struct tree_node *node = &t->nodes[here.node];
        if ((double)node->total < min_samples) {
            out->pruned += subtree_size[here.node];
            continue;
        }
        out->placed[out->nplaced++] = here;
        if (node->depth > out->max_depth)
            out->max_depth = node->depth;
        uint64_t end = here.offset + node->total;
        for (size_t c = first_child[here.node + 1]; c > first_child[here.node]; c--) {
            const struct child_ref *child = &children[c - 1];
            end -= t->nodes[child->node].total;
            todo[ntodo++] = (struct placed_node){ child->node, end };
        }
    }
    rc = 0;

done:
    free(first_child);
    free(fill);
    free(children);
    free(subtree_size);
    free(todo);
    if (rc != 0) {
        free(out->placed);
        out->placed = NULL;
    }
    return rc;
}

/* ---------------------------------------------------------------------------
 * Writing XML.
 * ------------------------------------------------------------------------- */

/* Number of code points in valid UTF-8 `s`. */
static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* Write at most `max_chars` code points of valid UTF-8 `s` as XML character
 * data: markup characters become entities, control characters XML forbids
 * become spaces, and the non-characters U+FFFE/U+FFFF become U+FFFD. */
static void put_xml_prefix(FILE *out, const char *s, size_t max_chars)
{
    const unsigned char *c = (const unsigned char *)s;
    for (size_t chars = 0; *c && chars < max_chars; chars++) {
        switch (*c) {
        case '&':  fputs("&amp;", out); c++; continue;
        case '<':  fputs("&lt;", out); c++; continue;
        case '>':  fputs("&gt;", out); c++; continue;
        case '"':  fputs("&quot;", out); c++; continue;
        case '\'': fputs("&apos;", out); c++; continue;
        default:   break;
        }
        if (*c < 0x20) {
            fputc(' ', out);
            c++;
        } else if (c[0] == 0xef && c[1] == 0xbf && (c[2] == 0xbe || c[2] == 0xbf)) {
            fputs("\xef\xbf\xbd", out);
            c += 3;
        } else {
            /* one code point: its lead byte and continuation bytes */
            do
                fputc(*c++, out);
            while ((*c & 0xc0) == 0x80);
        }
    }
}

static void put_xml(FILE *out, const char *s)
{
    put_xml_prefix(out, s, SIZE_MAX);
}

/* The label clipped to what fits in `max_chars`, ".." marking a cut. */
static void put_xml_clipped(FILE *out, const char *s, size_t max_chars)
{
    if (max_chars < 3)
        return;
    if (utf8_length(s) <= max_chars) {
        put_xml(out, s);
        return;
    }
    put_xml_prefix(out, s, max_chars - 2);
    fputs("..", out);
}

/* ---------------------------------------------------------------------------
 * Colours: stable per function name.
 * ------------------------------------------------------------------------- */

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;  /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

static void frame_colour(const struct profile *p, uint32_t frame, char *buf, size_t cap)
{
    if (frame == NO_NODE) {  /* the root */
        snprintf(buf, cap, "rgb(200,200,200)");
        return;
    }
    const struct profile_frame *f = &p->frames[frame];
    uint32_t h = name_hash(profile_str(p, f->name));
    unsigned a = h & 0xff, b = (h >> 8) & 0xff, c = (h >> 16) & 0xff;
    switch (f->kind) {
    case PROFILE_FRAME_NATIVE:  /* blues */
        snprintf(buf, cap, "rgb(%u,%u,%u)", 60 + a % 60, 130 + b % 80, 205 + c % 50);
        break;
    case PROFILE_FRAME_SYNTH:   /* violets */
        snprintf(buf, cap, "rgb(%u,%u,%u)", 165 + a % 40, 145 + b % 40, 215 + c % 40);
        break;
    default:                    /* Python: reds, oranges, yellows */
        snprintf(buf, cap, "rgb(%u,%u,%u)", 205 + a % 50, 70 + b % 160, 30 + c % 50);
        break;
    }
}

/* ---------------------------------------------------------------------------
 * The document.
 * ------------------------------------------------------------------------- */

static const char flamegraph_style[] =
    "text { font-family: monospace; font-size: " "12" "px; fill: #000; }\n"
    "#title { font-size: 17px; font-family: sans-serif; }\n"
    "#subtitle, #details, #matched, #pruned { fill: #444; }\n"
    ".control { fill: #0645ad; cursor: pointer; }\n"
    ".control:hover { text-decoration: underline; }\n"
    "#frames g { cursor: pointer; }\n"
    "#frames text { pointer-events: none; }\n"
    "#frames g:hover rect { stroke: #000; stroke-width: 0.5; }\n"
    "#frames g.ancestor { opacity: 0.55; }\n";

static const char flamegraph_script[] =
    "(function () {\n"
    "  'use strict';\n"
    "  var svg = document.documentElement;\n"
    "  var plotX = +svg.getAttribute('data-plot-x');\n"
    "  var plotW = +svg.getAttribute('data-plot-width');\n"
    "  var total = +svg.getAttribute('data-total');\n"
    "  var charW = +svg.getAttribute('data-char-width');\n"
    "  var matchFill = 'rgb(230,0,230)';\n"
    "  var details = document.getElementById('details');\n"
    "  var resetButton = document.getElementById('reset');\n"
    "  var searchButton = document.getElementById('search');\n"
    "  var matched = document.getElementById('matched');\n"
    "  var frameGroup = document.getElementById('frames');\n"
    "  var frames = [];\n"
    "  var lastPattern = '';\n"
    "  var searching = false;\n"
    "\n"
    "  for (var i = 0; i < frameGroup.children.length; i++) {\n"
    "    var g = frameGroup.children[i];\n"
    "    var title = g.getElementsByTagName('title')[0].textContent;\n"
    "    var cut = title.lastIndexOf(' \\u2014 ');\n"
    "    var rect = g.getElementsByTagName('rect')[0];\n"
    "    frames.push({ g: g, rect: rect, text: g.getElementsByTagName('text')[0],\n"
    "      o: +g.getAttribute('data-o'), n: +g.getAttribute('data-n'),\n"
    "      d: +g.getAttribute('data-d'), title: title,\n"
    "      label: cut >= 0 ? title.slice(0, cut) : title, chars: null,\n"
    "      fill: rect.getAttribute('fill') });\n"
    "    g.pyrometerFrame = i;\n"
    "  }\n"
    "\n"
    "  function fitLabel(f, width) {\n"
    "    var room = Math.floor((width - 2 * 3) / charW);\n"
    "    if (room < 3) return '';\n"
    "    if (f.chars === null) f.chars = Array.from(f.label);\n"
    "    if (f.chars.length <= room) return f.label;\n"
    "    return f.chars.slice(0, room - 2).join('') + '..';\n"
    "  }\n"
    "  function place(f, x, width, ancestor) {\n"
    "    f.g.style.display = '';\n"
    "    if (ancestor) f.g.setAttribute('class', 'ancestor');\n"
    "    else f.g.removeAttribute('class');\n"
    "    f.rect.setAttribute('x', x.toFixed(2));\n"
    "    f.rect.setAttribute('width', width.toFixed(2));\n"
    "    f.text.setAttribute('x', (x + 3).toFixed(2));\n"
    "    f.text.textContent = fitLabel(f, width);\n"
    "  }\n"
    "  function zoom(z) {\n"
    "    frames.forEach(function (f) {\n"
    "      if (f.d < z.d) {\n"
    "        if (f.o <= z.o && f.o + f.n >= z.o + z.n) place(f, plotX, plotW, true);\n"
    "        else f.g.style.display = 'none';\n"
    "      } else if (f.o >= z.o && f.o + f.n <= z.o + z.n) {\n"
    "        place(f, plotX + (f.o - z.o) / z.n * plotW, f.n / z.n * plotW, false);\n"
    "      } else {\n"
    "        f.g.style.display = 'none';\n"
    "      }\n"
    "    });\n"
    "    resetButton.style.display = '';\n"
    "  }\n"
    "  function unzoom() {\n"
    "    frames.forEach(function (f) {\n"
    "      place(f, plotX + f.o / total * plotW, f.n / total * plotW, false);\n"
    "    });\n"
    "    resetButton.style.display = 'none';\n"
    "  }\n"
    "  function frameAt(event) {\n"
    "    for (var el = event.target; el; el = el.parentNode)\n"
    "      if (el.pyrometerFrame !== undefined) return frames[el.pyrometerFrame];\n"
    "    return null;\n"
    "  }\n"
    "\n"
    "  function clearSearch() {\n"
    "    frames.forEach(function (f) { f.rect.setAttribute('fill', f.fill); });\n"
    "    matched.textContent = '';\n"
    "    searchButton.textContent = 'Search';\n"
    "    searching = false;\n"
    "  }\n"
    "  function search(pattern) {\n"
    "    var re;\n"
    "    try { re = new RegExp(pattern); }\n"
    "    catch (e) { matched.textContent = 'Invalid regular expression: ' + e.message; return; }\n"
    "    var hits = [];\n"
    "    frames.forEach(function (f) {\n"
    "      if (f.d > 0 && re.test(f.label)) { f.rect.setAttribute('fill', matchFill); hits.push(f); }\n"
    "      else f.rect.setAttribute('fill', f.fill);\n"
    "    });\n"
    "    /* Samples covered by the union of matching frames (nested ones count once). */\n"
    "    hits.sort(function (a, b) { return a.o - b.o; });\n"
    "    var covered = 0, end = 0;\n"
    "    hits.forEach(function (f) {\n"
    "      var fEnd = f.o + f.n;\n"
    "      if (f.o >= end) { covered += f.n; end = fEnd; }\n"
    "      else if (fEnd > end) { covered += fEnd - end; end = fEnd; }\n"
    "    });\n"
    "    var percent = total ? 100 * covered / total : 0;\n"
    "    matched.textContent = 'Matched: ' + percent.toFixed(2) + '% (' + covered +\n"
    "      ' of ' + total + ' samples, ' + hits.length + ' frames)';\n"
    "    searchButton.textContent = 'Reset search';\n"
    "    searching = true;\n"
    "  }\n"
    "  function askSearch() {\n"
    "    var pattern = window.prompt('Search frames (regular expression):', lastPattern);\n"
    "    if (pattern === null) return;\n"
    "    lastPattern = pattern;\n"
    "    if (pattern === '') clearSearch(); else search(pattern);\n"
    "  }\n"
    "\n"
    "  frameGroup.addEventListener('mouseover', function (event) {\n"
    "    var f = frameAt(event);\n"
    "    if (f) details.textContent = f.title;\n"
    "  });\n"
    "  frameGroup.addEventListener('mouseout', function () { details.textContent = ' '; });\n"
    "  frameGroup.addEventListener('click', function (event) {\n"
    "    var f = frameAt(event);\n"
    "    if (f === null) return;\n"
    "    if (f.d === 0) unzoom(); else zoom(f);\n"
    "  });\n"
    "  resetButton.addEventListener('click', unzoom);\n"
    "  searchButton.addEventListener('click', function () {\n"
    "    if (searching) clearSearch(); else askSearch();\n"
    "  });\n"
    "  document.addEventListener('keydown', function (event) {\n"
    "    if ((event.key === 'f' && (event.ctrlKey || event.metaKey)) ||\n"
    "        (event.key === '/' && !event.ctrlKey && !event.metaKey)) {\n"
    "      event.preventDefault();\n"
    "      askSearch();\n"
    "    } else if (event.key === 'Escape') {\n"
    "      clearSearch();\n"
    "      unzoom();\n"
    "    }\n"
    "  });\n"
    "})();\n";

static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

static void write_header(FILE *out, const struct profile *p, const struct render_opts *o,
                         uint64_t total, unsigned height)
{
    char *title = NULL;
    if (o && o->title) {
        title = render_utf8_clean(o->title);
    } else {
        char buf[sizeof p->meta.program + 16];
        snprintf(buf, sizeof buf, "%s%s", p->meta.program[0] ? "pyrometer: " : "pyrometer",
                 p->meta.program);
        title = render_utf8_clean(buf);
    }
    const char *shown_title = title ? title : "pyrometer";

    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
            "height=\"%u\" viewBox=\"0 0 %d %u\" data-plot-x=\"%d\" data-plot-width=\"%d\" "
            "data-total=\"%" PRIu64 "\" data-char-width=\"%.2f\">\n",
            IMAGE_WIDTH, height, IMAGE_WIDTH, height, PLOT_X, PLOT_WIDTH, total,
            CHAR_WIDTH_PX);
    fputs("<title>", out);
    put_xml(out, shown_title);
    fputs("</title>\n<style><![CDATA[\n", out);
    fputs(flamegraph_style, out);
    fputs("]]></style>\n", out);
    fprintf(out, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%u\" fill=\"#fcfbf7\"/>\n",
            IMAGE_WIDTH, height);
    fprintf(out, "<text id=\"title\" x=\"%d\" y=\"24\" text-anchor=\"middle\">",
            IMAGE_WIDTH / 2);
    put_xml_clipped(out, shown_title, TITLE_MAX_CHARS);
    fputs("</text>\n", out);
    free(title);

    /* "N samples · D s · R Hz · Python X · pid P" — what is known. */
    fprintf(out, "<text id=\"subtitle\" x=\"%d\" y=\"44\" text-anchor=\"middle\">"
            "%" PRIu64 " sample%s", IMAGE_WIDTH / 2, total, plural(total));
    if (p->meta.duration_ns > 0)
        fprintf(out, " \xc2\xb7 %.2f s", (double)p->meta.duration_ns / 1e9);
    if (p->meta.rate_hz > 0)
        fprintf(out, " \xc2\xb7 %g Hz", p->meta.rate_hz);
    if (p->meta.python_version[0]) {
        char version[sizeof p->meta.python_version + 1];
        snprintf(version, sizeof version, "%s", p->meta.python_version);
        char *clean = render_utf8_clean(version);
        fputs(" \xc2\xb7 Python ", out);
        put_xml(out, clean ? clean : "?");
        free(clean);
    }
    if (p->meta.pid > 0)
        fprintf(out, " \xc2\xb7 pid %d", p->meta.pid);
    if (p->meta.errors > 0)
        fprintf(out, " \xc2\xb7 %" PRIu64 " torn sample%s discarded", p->meta.errors,
                plural(p->meta.errors));
    fputs("</text>\n", out);

    fprintf(out, "<text id=\"reset\" class=\"control\" x=\"%d\" y=\"64\" "
            "style=\"display:none\">Reset zoom</text>\n", PLOT_X);
    fprintf(out, "<text id=\"search\" class=\"control\" x=\"%d\" y=\"64\" "
            "text-anchor=\"end\">Search</text>\n", PLOT_X + PLOT_WIDTH);
}

static void write_frame(FILE *out, const struct profile *p, const struct call_tree *t,
                        const struct placed_node *placed, char *const *labels,
                        uint32_t max_depth)
{
    const struct tree_node *node = &t->nodes[placed->node];
    uint64_t total = t->nodes[ROOT_NODE].total;
    double x = PLOT_X + (double)placed->offset / (double)total * PLOT_WIDTH;
    double width = (double)node->total / (double)total * PLOT_WIDTH;
    unsigned y = FRAMES_TOP + (max_depth - node->depth) * FRAME_HEIGHT;
    const char *label = node->frame == NO_NODE ? "all" : labels[node->frame];
    char colour[32];
    frame_colour(p, node->frame, colour, sizeof colour);

    fprintf(out, "<g data-o=\"%" PRIu64 "\" data-n=\"%" PRIu64 "\" data-d=\"%" PRIu32
            "\"><title>", placed->offset, node->total, node->depth);
    put_xml(out, label);
    fprintf(out, " \xe2\x80\x94 %" PRIu64 " sample%s (%.2f%%)</title>", node->total,
            plural(node->total), 100.0 * (double)node->total / (double)total);
    fprintf(out, "<rect x=\"%.2f\" y=\"%u\" width=\"%.2f\" height=\"%d\" fill=\"%s\"/>"
            "<text x=\"%.2f\" y=\"%.1f\">", x, y, width, FRAME_HEIGHT - 1, colour,
            x + TEXT_PAD_PX, y + FRAME_HEIGHT - 4.5);
    double room = (width - 2 * TEXT_PAD_PX) / CHAR_WIDTH_PX;
    put_xml_clipped(out, label, room > 0 ? (size_t)room : 0);
    fputs("</text></g>\n", out);
}

static void write_footer(FILE *out, uint64_t pruned, unsigned height)
{
    fprintf(out, "<text id=\"details\" x=\"%d\" y=\"%u\"> </text>\n", PLOT_X, height - 26);
    fprintf(out, "<text id=\"matched\" x=\"%d\" y=\"%u\" text-anchor=\"end\"></text>\n",
            PLOT_X + PLOT_WIDTH, height - 26);
    if (pruned > 0)
        fprintf(out, "<text id=\"pruned\" x=\"%d\" y=\"%u\">%" PRIu64 " frame%s narrower "
                "than %g px not drawn</text>\n", PLOT_X, height - 8, pruned, plural(pruned),
                MIN_FRAME_PX);
    fputs("<script><![CDATA[\n", out);
    fputs(flamegraph_script, out);
    fputs("]]></script>\n</svg>\n", out);
}

/* Everything but the C-locale switch (see render_flamegraph). */
static int write_flamegraph(const struct profile *p, const struct render_opts *o, FILE *out,
                            struct pm_error *err)
{
    struct call_tree tree;
    struct layout layout = { 0 };
    uint32_t *rank = NULL;
    char **labels = render_frame_labels(p, o ? o->full_filenames : 0);
    int built = labels ? tree_build(&tree, p) : -1;
    if (built == 0)
        rank = rank_frames_by_label(p, labels);
    if (built != 0 || rank == NULL || layout_tree(&tree, rank, &layout) != 0) {
        if (labels)
            tree_free(&tree);
        free(rank);
        render_free_labels(labels, labels ? p->nframes : 0);
        return pm_fail(err, PM_ENOMEM, "out of memory rendering the flame graph");
    }

    uint64_t total = tree.nodes[ROOT_NODE].total;
    unsigned rows = total > 0 ? layout.max_depth + 1 : 1;
    unsigned height = FRAMES_TOP + rows * FRAME_HEIGHT + FOOTER_HEIGHT;
    write_header(out, p, o, total, height);
    fputs("<g id=\"frames\">\n", out);
    if (total > 0)
        for (size_t i = 0; i < layout.nplaced; i++)
            write_frame(out, p, &tree, &layout.placed[i], labels, layout.max_depth);
    fputs("</g>\n", out);
    if (total == 0)
        fprintf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">No samples were "
                "collected.</text>\n", IMAGE_WIDTH / 2, FRAMES_TOP + FRAME_HEIGHT - 4);
    write_footer(out, layout.pruned, height);

    free(layout.placed);
    free(rank);
    tree_free(&tree);
    render_free_labels(labels, p->nframes);
    return render_finish(out, "flame graph", err);
}

int render_flamegraph(const struct profile *p, const struct render_opts *o, FILE *out,
                      struct pm_error *err)
{
    /* Coordinates must use '.' whatever locale the program runs in. */
    locale_t c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (c_numeric == (locale_t)0)
        return pm_fail(err, PM_ENOMEM, "cannot create the C locale");
    locale_t previous = uselocale(c_numeric);
    int rc = write_flamegraph(p, o, out, err);
    uselocale(previous);
    freelocale(c_numeric);
    return rc;
}
