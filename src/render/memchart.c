/*
 * memchart.c — heap and RSS over time as one self-contained HTML page
 * (memchart.h).  The chart is inline SVG drawn here (two polylines, axes with
 * round ticks, a marker at the peak); a few lines of inline script show the
 * values under the pointer.  No network, no external files.
 */
#include "memchart.h"

#include <math.h>
#include <string.h>

#include "render.h"

void memchart_bytes(uint64_t bytes, char *out, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, cap, v >= 100 ? "%.0f %s" : v >= 10 ? "%.1f %s" : "%.2f %s", v, units[u]);
}

static void html_text(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
    }
}

/* A "nice" tick step for a range. */
static double nice_step(double range, int ticks)
{
    if (range <= 0)
        return 1;
    double raw = range / ticks, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

int render_memchart(const struct memchart *c, FILE *out, struct pm_error *err)
{
    const double W = 960, H = 420, L = 90, R = 20, T = 20, B = 50;
    double pw = W - L - R, ph = H - T - B;
    uint64_t tmax = 1, ymax = 1;
    for (size_t i = 0; i < c->npoints; i++) {
        const struct memchart_point *p = &c->points[i];
        if (p->t_ns > tmax)
            tmax = p->t_ns;
        if (p->heap_max > ymax)
            ymax = p->heap_max;
        if (p->rss > ymax)
            ymax = p->rss;
    }
    if (c->peak_bytes > ymax)
        ymax = c->peak_bytes;
    double ys = (double)ymax * 1.05;
    char peak[32];
    memchart_bytes(c->peak_bytes, peak, sizeof peak);

    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", out);
    html_text(out, c->title);
    fputs("</title><style>body{font:14px sans-serif;margin:20px;color:#222}"
          "svg text{font:12px sans-serif}.heap{fill:none;stroke:#d9480f;stroke-width:2}"
          ".rss{fill:none;stroke:#1c7ed6;stroke-width:1.5;stroke-dasharray:5 3}"
          ".grid{stroke:#ddd}.peak{stroke:#c92a2a;stroke-width:1;stroke-dasharray:3 3}"
          "#info{height:1.4em;color:#555}</style></head><body>\n<h2>", out);
    html_text(out, c->title);
    fprintf(out, "</h2>\n<p>Peak of tracked heap: <b>%s</b> at %.3f s", peak,
            (double)c->peak_t_ns / 1e9);
    if (c->peak_where) {
        fputs(" (largest holder: ", out);
        html_text(out, c->peak_where);
        fputs(")", out);
    }
    fputs(". <span style=\"color:#d9480f\">&#9644; heap (live tracked bytes)</span> "
          "<span style=\"color:#1c7ed6\">&#9476; RSS</span></p>\n<div id=\"info\"></div>\n", out);
    fprintf(out, "<svg id=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n", W,
            H, W, H);
    /* axes and grid */
    double ystep = nice_step(ys, 6);
    for (double y = 0; y <= ys; y += ystep) {
        double py = T + ph - y / ys * ph;
        char label[32];
        memchart_bytes((uint64_t)y, label, sizeof label);
        fprintf(out, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
                     "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                L, L + pw, py, py, L - 6, py + 4, label);
    }
    double tsec = (double)tmax / 1e9, tstep = nice_step(tsec, 8);
    for (double t = 0; t <= tsec + 1e-12; t += tstep) {
        double px = L + t / tsec * pw;
        fprintf(out, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
                     "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g s</text>\n",
                px, px, T, T + ph, px, T + ph + 16, t);
    }
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time since start</text>\n",
            L + pw / 2, H - 8);
    /* the lines */
    fputs("<polyline class=\"heap\" points=\"", out);
    for (size_t i = 0; i < c->npoints; i++) {
        const struct memchart_point *p = &c->points[i];
        fprintf(out, "%.1f,%.1f ", L + (double)p->t_ns / (double)tmax * pw,
                T + ph - (double)p->heap_max / ys * ph);
    }
    fputs("\"/>\n<polyline class=\"rss\" points=\"", out);
    for (size_t i = 0; i < c->npoints; i++) {
        const struct memchart_point *p = &c->points[i];
        if (p->rss)
            fprintf(out, "%.1f,%.1f ", L + (double)p->t_ns / (double)tmax * pw,
                    T + ph - (double)p->rss / ys * ph);
    }
    fputs("\"/>\n", out);
    double px = L + (double)c->peak_t_ns / (double)tmax * pw;
    double py = T + ph - (double)c->peak_bytes / ys * ph;
    fprintf(out, "<line class=\"peak\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
                 "<circle id=\"peak\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#c92a2a\">"
                 "<title>peak %s at %.3f s</title></circle>"
                 "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c92a2a\">peak %s</text>\n",
            px, px, T, T + ph, px, py, peak, (double)c->peak_t_ns / 1e9, px + 8, py - 8 < T + 10 ? T + 10 : py - 8, peak);
    fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                 "stroke=\"#888\"/>\n</svg>\n", L, T, pw, ph);
    /* the data for the pointer readout */
    fputs("<script>\nvar P=[", out);
    for (size_t i = 0; i < c->npoints; i++)
        fprintf(out, "%s[%.6f,%llu,%llu]", i ? "," : "", (double)c->points[i].t_ns / 1e9,
                (unsigned long long)c->points[i].heap_max, (unsigned long long)c->points[i].rss);
    fprintf(out, "];\nvar L=%.1f,W=%.1f,T=%.6f;\n", L, pw, tsec);
    fputs("function fmt(b){var u=['B','KiB','MiB','GiB','TiB'],i=0;while(b>=1024&&i<4){b/=1024;i++}"
          "return (i?b.toFixed(b>=100?0:b>=10?1:2):b)+' '+u[i]}\n"
          "document.getElementById('chart').addEventListener('mousemove',function(e){"
          "var r=this.getBoundingClientRect(),t=(e.clientX-r.left-L)/W*T,best=null;"
          "for(var i=0;i<P.length;i++){if(best===null||Math.abs(P[i][0]-t)<Math.abs(P[best][0]-t))best=i}"
          "if(best!==null)document.getElementById('info').textContent='t = '+P[best][0].toFixed(3)+"
          "' s   heap '+fmt(P[best][1])+(P[best][2]?'   RSS '+fmt(P[best][2]):'')});\n"
          "</script>\n</body></html>\n", out);
    return render_finish(out, "the temporal chart", err);
}
