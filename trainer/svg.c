/* svg.c: see svg.h. The document is built in memory (a few hundred KB at most) and written with
 * one atomic file write. */
#include "trainer/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fileio.h"

#define W 860.0
#define H 480.0
#define ML 74.0  /* margins: left, right, top, bottom */
#define MR 24.0
#define MT 64.0
#define MB 56.0

typedef struct ft_sb {
    char *s;
    size_t len, cap;
    int oom;
} ft_sb;

static void sb_printf(ft_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(ft_sb *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p, b->cap = cap;
    }
}

/* XML-escaped text */
static void sb_text(ft_sb *b, const char *t) {
    for (; t && *t; t++) {
        if (*t == '<') sb_printf(b, "&lt;");
        else if (*t == '>') sb_printf(b, "&gt;");
        else if (*t == '&') sb_printf(b, "&amp;");
        else if (*t == '"') sb_printf(b, "&quot;");
        else sb_printf(b, "%c", *t);
    }
}

/* A 1-2-5 step giving about `target` intervals over [lo, hi]. */
static double ft_nice_step(double lo, double hi, int target) {
    double raw = (hi - lo) / target;
    if (!(raw > 0)) return 1;
    double mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

static void ft_tick_label(char *buf, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-9) v = 0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    if (fabs(v) >= 1e5) snprintf(buf, cap, "%.3g", v);
    else snprintf(buf, cap, "%.*f", dec, v);
}

ft_status ft_svg_write(const char *path, const ft_svg_chart *c, const ft_svg_series *s, int n_series) {
    /* data ranges over the finite points */
    double x0 = 0, x1 = c->xmax > 0 ? c->xmax : 1, y0 = INFINITY, y1 = -INFINITY;
    int64_t total = 0;
    for (int k = 0; k < n_series; k++)
        for (int64_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            if (s[k].x[i] > x1) x1 = s[k].x[i];
            if (s[k].y[i] < y0) y0 = s[k].y[i];
            if (s[k].y[i] > y1) y1 = s[k].y[i];
            total++;
        }
    if (!total) y0 = 0, y1 = 1;
    if (y1 - y0 < 1e-9) y0 -= 0.5, y1 += 0.5;
    double ys = ft_nice_step(y0, y1, 6), xs = ft_nice_step(x0, x1, 8);
    y0 = floor(y0 / ys) * ys, y1 = ceil(y1 / ys) * ys;
    x1 = ceil(x1 / xs) * xs;
    const double pw = W - ML - MR, ph = H - MT - MB;
#define PX(x) (ML + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (MT + ph - ((y) - y0) / (y1 - y0) * ph)

    ft_sb b = {0};
    sb_printf(&b,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
              "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
              "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
              W, H, W, H);
    sb_printf(&b, "<text x=\"%.1f\" y=\"24\" font-size=\"16\" font-weight=\"bold\" fill=\"#222\">", ML);
    sb_text(&b, c->title);
    sb_printf(&b, "</text>\n");
    if (c->subtitle) {
        sb_printf(&b, "<text x=\"%.1f\" y=\"42\" fill=\"#666\">", ML);
        sb_text(&b, c->subtitle);
        sb_printf(&b, "</text>\n");
    }
    /* grid and tick labels */
    sb_printf(&b, "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
    for (double y = y0; y <= y1 + ys * 1e-6; y += ys) sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", ML, PY(y), ML + pw, PY(y));
    for (double x = x0; x <= x1 + xs * 1e-6; x += xs) sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PX(x), MT, PX(x), MT + ph);
    sb_printf(&b, "</g>\n<g fill=\"#444\">\n");
    char lab[64];
    for (double y = y0; y <= y1 + ys * 1e-6; y += ys) {
        ft_tick_label(lab, sizeof lab, y, ys);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ML - 8, PY(y) + 4, lab);
    }
    for (double x = x0; x <= x1 + xs * 1e-6; x += xs) {
        ft_tick_label(lab, sizeof lab, x, xs);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", PX(x), MT + ph + 18, lab);
    }
    sb_printf(&b, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n",
              ML, MT, pw, ph);
    sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#222\">", ML + pw / 2, H - 14);
    sb_text(&b, c->xlabel);
    sb_printf(&b, "</text>\n<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\" fill=\"#222\">",
              MT + ph / 2);
    sb_text(&b, c->ylabel);
    sb_printf(&b, "</text>\n");

    /* series: long ones averaged into buckets */
    for (int k = 0; k < n_series; k++) {
        const ft_svg_series *ser = &s[k];
        int64_t per = ser->n > FT_SVG_MAX_POINTS ? (ser->n + FT_SVG_MAX_POINTS - 1) / FT_SVG_MAX_POINTS : 1;
        if (ser->width > 0) {
            sb_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\" stroke-linejoin=\"round\" points=\"",
                      ser->color, ser->width);
            for (int64_t i = 0; i < ser->n; i += per) {
                double sx = 0, sy = 0;
                int64_t m = 0;
                for (int64_t j = i; j < i + per && j < ser->n; j++)
                    if (isfinite(ser->x[j]) && isfinite(ser->y[j])) sx += ser->x[j], sy += ser->y[j], m++;
                if (m) sb_printf(&b, "%.1f,%.1f ", PX(sx / m), PY(sy / m));
            }
            sb_printf(&b, "\"/>\n");
        }
        if (ser->markers)
            for (int64_t i = 0; i < ser->n; i += per)
                if (isfinite(ser->x[i]) && isfinite(ser->y[i]))
                    sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\"/>\n", PX(ser->x[i]),
                              PY(ser->y[i]), ser->color);
    }
    /* legend, top right inside the plot */
    double lx = ML + pw - 170, ly = MT + 10;
    sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"160\" height=\"%d\" fill=\"#ffffff\" fill-opacity=\"0.85\" "
                  "stroke=\"#ccc\"/>\n",
              lx, ly, 8 + 18 * n_series);
    for (int k = 0; k < n_series; k++) {
        double yy = ly + 17 + 18 * k;
        if (s[k].width > 0)
            sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%.2f\"/>\n",
                      lx + 8, yy - 4, lx + 30, yy - 4, s[k].color, s[k].width > 1.5 ? s[k].width : 1.5);
        if (s[k].markers) sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\"/>\n", lx + 19, yy - 4, s[k].color);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#222\">", lx + 38, yy);
        sb_text(&b, s[k].name);
        sb_printf(&b, "</text>\n");
    }
    sb_printf(&b, "</svg>\n");
#undef PX
#undef PY
    if (b.oom) {
        free(b.s);
        return FT_ERR(FT_E_OOM, "%s: out of memory drawing the chart", path);
    }
    ft_afile af;
    ft_status st = ft_afile_open(&af, path);
    if (st == FT_OK) {
        st = ft_afile_write(&af, b.s, (int64_t)b.len);
        if (st == FT_OK) st = ft_afile_commit(&af);
        else ft_afile_abort(&af);
    }
    free(b.s);
    return st;
}
