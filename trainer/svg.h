/* svg.h: a small hand-written SVG line chart (axes with "nice" ticks, grid, polylines, optional
 * point markers, legend, title), written atomically. Used for the run's loss curve
 * (OUTPUT_DIR/loss.svg), which a person opens in a browser during or after a run.
 * Series longer than FT_SVG_MAX_POINTS are averaged into that many buckets; non-finite points
 * are left out. */
#ifndef FT_SVG_H
#define FT_SVG_H

#include <stdint.h>

#include "kernels/status.h"

#define FT_SVG_MAX_POINTS 1500

typedef struct ft_svg_series {
    const char *name;     /* legend text */
    const char *color;    /* CSS color */
    const double *x, *y;  /* [n] */
    int64_t n;
    double width;         /* stroke width; 0 = no line */
    int markers;          /* draw a dot at every point */
} ft_svg_series;

typedef struct ft_svg_chart {
    const char *title;
    const char *subtitle; /* second line, may be NULL */
    const char *xlabel, *ylabel;
    double xmax;          /* x axis runs to at least this (e.g. the planned steps); 0 = data */
} ft_svg_chart;

ft_status ft_svg_write(const char *path, const ft_svg_chart *c, const ft_svg_series *s, int n_series);

#endif
