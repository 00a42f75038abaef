/* test_run_metrics.c: metrics.jsonl and the loss chart (trainer/metrics.h, trainer/svg.h).
 *   - resume cuts the file back to the checkpoint's step: the kept part is byte-identical to
 *     the original prefix, later lines and a torn last line (a killed write) are dropped, and
 *     appending continues from there;
 *   - non-finite values are written as null, skipped steps are marked;
 *   - the chart is a complete SVG with the three series, also for long runs (bucketed) and for a
 *     run with no finite point. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/metrics.h"
#include "trainer/svg.h"

static void line(ft_metrics *m, int64_t step, double loss, const char *skip) {
    ft_metrics_train t = {.step = step, .loss = loss, .lr = 1e-4 * (double)step, .grad_norm = 0.5, .targets = 100,
                          .tokens = 128, .epoch = 0.1 * (double)step, .skipped = skip, .elapsed_s = 0.25 * (double)step,
                          .step_s = 0.25, .tok_s = 512, .mem_bytes = 1 << 20, .rss_bytes = 2 << 20};
    FT_CHECK_OK(ft_metrics_train_line(m, &t));
}

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++) n++;
    return n;
}

int main(void) {
    char path[4096], svg[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", ft_test_tmpdir());
    snprintf(svg, sizeof svg, "%s/loss.svg", ft_test_tmpdir());
    ft_metrics *m = NULL;
    FT_CHECK_OK(ft_metrics_open(&m, path, -1));
    for (int64_t s = 1; s <= 10; s++) {
        line(m, s, s == 7 ? NAN : 3.0 / (double)s, s == 7 ? "nonfinite" : NULL);
        if (s % 5 == 0) FT_CHECK_OK(ft_metrics_eval_line(m, s, 1.0 / (double)s, 500, 0.3 * (double)s));
    }
    ft_metrics_close(m);
    char *full = NULL, *cut = NULL;
    int64_t full_len = 0, cut_len = 0;
    FT_CHECK_OK(ft_test_read_file(path, &full, &full_len));
    FT_CHECK(count(full, "\n") == 12, "12 lines (10 train, 2 eval)");
    FT_CHECK(strstr(full, "\"step\":7,\"loss\":null") && strstr(full, "\"skipped\":\"nonfinite\""), "NaN loss is null and marked");
    FT_CHECK(strstr(full, "{\"type\":\"eval\",\"step\":5,\"val_loss\":0.2,"), "eval line");

    /* a torn last line, as a SIGKILL during a write leaves */
    FILE *f = fopen(path, "ab");
    fputs("{\"type\":\"train\",\"step\":11,\"loss\":0.2", f);
    fclose(f);
    FT_CHECK_OK(ft_metrics_open(&m, path, 6));
    FT_CHECK(isfinite(ft_metrics_last_eval(m)) && fabs(ft_metrics_last_eval(m) - 0.2) < 1e-12, "history reloaded");
    ft_metrics_close(m);
    FT_CHECK_OK(ft_test_read_file(path, &cut, &cut_len));
    const char *end6 = strstr(full, "{\"type\":\"train\",\"step\":7,");
    FT_CHECK(end6 && cut_len == end6 - full && memcmp(cut, full, (size_t)cut_len) == 0,
             "cut at step 6: the first %lld bytes, unchanged", (long long)(end6 ? end6 - full : -1));
    free(cut);

    /* appending after the cut reproduces the original lines */
    FT_CHECK_OK(ft_metrics_open(&m, path, 6));
    for (int64_t s = 7; s <= 10; s++) {
        line(m, s, s == 7 ? NAN : 3.0 / (double)s, s == 7 ? "nonfinite" : NULL);
        if (s % 5 == 0) FT_CHECK_OK(ft_metrics_eval_line(m, s, 1.0 / (double)s, 500, 0.3 * (double)s));
    }
    FT_CHECK_OK(ft_metrics_plot(m, svg, "test <run> & co", 20));
    ft_metrics_close(m);
    FT_CHECK_OK(ft_test_read_file(path, &cut, &cut_len));
    FT_CHECK(cut_len == full_len && memcmp(cut, full, (size_t)full_len) == 0, "resumed file equals the original");
    free(cut);

    char *s = NULL;
    FT_CHECK_OK(ft_test_read_file(svg, &s, NULL));
    FT_CHECK(strncmp(s, "<?xml", 5) == 0 && strstr(s, "</svg>\n") && count(s, "<polyline") == 3 &&
                 count(s, "<circle") == 3 /* two eval points + legend */ && strstr(s, "test &lt;run&gt; &amp; co"),
             "chart: complete SVG, 3 lines, eval markers, escaped title");
    free(s);

    /* long series are bucketed; an empty or all-NaN chart still renders */
    enum { L = 100000 };
    double *x = malloc(L * sizeof *x), *y = malloc(L * sizeof *y);
    for (int i = 0; i < L; i++) x[i] = i + 1, y[i] = i % 1000 == 0 ? NAN : 2.0 + sin(i * 0.01);
    ft_svg_series ser[2] = {{.name = "a", .color = "#000", .x = x, .y = y, .n = L, .width = 1},
                            {.name = "b", .color = "#f00", .x = x, .y = y, .n = 0, .width = 1, .markers = 1}};
    ft_svg_chart c = {.title = "long", .xlabel = "step", .ylabel = "loss"};
    FT_CHECK_OK(ft_svg_write(svg, &c, ser, 2));
    int64_t len = 0;
    FT_CHECK_OK(ft_test_read_file(svg, &s, &len));
    FT_CHECK(len < 200000 && strstr(s, "</svg>"), "100k points: %lld bytes", (long long)len);
    free(s);
    for (int i = 0; i < L; i++) y[i] = NAN;
    FT_CHECK_OK(ft_svg_write(svg, &c, ser, 2));
    FT_CHECK_OK(ft_test_read_file(svg, &s, NULL));
    FT_CHECK(strstr(s, "</svg>") != NULL, "all-NaN chart renders");
    free(s);
    free(x);
    free(y);
    free(full);
    return ft_test_finish();
}
