/* harness.h: the test harness: checks that count failures, the one NaN-aware comparator of the
 * tree, fixture loading, and running the ftune binary.
 *
 * Every comparison is written `!(err <= tol)` so a NaN fails. Tests end with
 * `return ft_test_finish();`, which prints "N passed, N failed" and returns the exit code. */
#ifndef FT_HARNESS_H
#define FT_HARNESS_H

#include <stdint.h>
#include <stdio.h>

#include "kernels/status.h"

/* Records one check. Prints file:line and the message when it fails. */
int ft_check_impl(int ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define FT_CHECK(cond, ...) ft_check_impl(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* Checks that a status is FT_OK, printing the error message otherwise. */
#define FT_CHECK_OK(expr)                                                                          \
    do {                                                                                           \
        ft_status s_ = (expr);                                                                     \
        ft_check_impl(s_ == FT_OK, __FILE__, __LINE__, "%s -> %s: %s", #expr, ft_status_str(s_),   \
                      ft_error_msg());                                                             \
    } while (0)

typedef struct ft_cmp {
    double rel_l2;      /* ||a - b|| / ||b|| (||a-b|| if ||b|| == 0) */
    double max_abs;     /* max |a - b| */
    int64_t worst;      /* index of max |a - b| */
    int64_t n_nonfinite;/* elements where a or b is NaN/Inf */
} ft_cmp;

ft_cmp ft_compare_f32(const float *a, const float *ref, int64_t n);
/* Compares and records a check: fails when any value is non-finite or !(rel_l2 <= tol). */
int ft_check_close_impl(const float *a, const float *ref, int64_t n, double tol, const char *what,
                        const char *file, int line);
#define FT_CHECK_CLOSE(a, ref, n, tol, what) ft_check_close_impl((a), (ref), (n), (tol), (what), __FILE__, __LINE__)

int ft_test_finish(void);
int ft_test_failures(void);

/* Paths: the source tree, the shared assets and a fresh temporary directory per test run. */
const char *ft_test_src_dir(void);
const char *ft_test_shared_dir(void);
const char *ft_test_binary(void);
/* Creates (once) and returns a temporary directory unique to this process. */
const char *ft_test_tmpdir(void);

/* Reads a whole file: ft_read_file (kernels/fileio.h) with no size limit. len may be NULL. */
ft_status ft_test_read_file(const char *path, char **out, int64_t *len);
/* Decompresses the zstd file src (a frame that need not record its size) into dst; 1 on success. */
int ft_test_unzstd(const char *src, const char *dst);
/* 1 when the two files hold the same bytes. */
int ft_test_files_equal(const char *a, const char *b);
/* Every tensor of the F32 safetensors file `ref` against the tensor of that name in `ours` (the
 * same count; each present, F32, of the same shape; rel-L2 <= tol, NaN failing), each mismatch a
 * failed check with its line printed. Tensors whose name contains `show` (may be NULL) have their
 * error printed too. `what` starts each line. */
typedef struct ft_st_cmp {
    double worst;        /* worst rel-L2 (-1: nothing compared) */
    double max_abs;      /* max |a - b| of that tensor */
    int bad, n, shown;   /* tensors over tol, compared, shown */
    char name[256];      /* the worst tensor's name */
} ft_st_cmp;
ft_st_cmp ft_test_st_compare(const char *ours, const char *ref, const char *what, double tol, const char *show);
/* Training goldens (harness_train.c). A run's curve as ft_train_tokens reports it step by step
 * (ft_test_capture is its callback, user an ft_test_curve), at most FT_TEST_CURVE_MAX steps; a
 * reference curve JSON file (arrays loss, lr, grad_norm, targets: make_train_golden.py's) read into
 * one (the step count; 0: unreadable); a JSON file's number array `key` (at most cap; the count, -1:
 * unreadable); |a - ref| / |ref| (|a - ref| when ref is 0). */
#define FT_TEST_CURVE_MAX 64
typedef struct ft_test_curve {
    int64_t n;
    double loss[FT_TEST_CURVE_MAX], lr[FT_TEST_CURVE_MAX], grad_norm[FT_TEST_CURVE_MAX];
    int64_t targets[FT_TEST_CURVE_MAX];
} ft_test_curve;
struct ft_step_info;
ft_status ft_test_capture(void *user, const struct ft_step_info *s);
int64_t ft_test_read_curve(const char *path, ft_test_curve *c);
int64_t ft_test_json_array(const char *path, const char *key, double *out, int64_t cap);
double ft_test_rel(double a, double ref);
/* make_train_golden.py's run, as the scripts built on it replay it: `steps` AdamW steps (0.9, 0.999,
 * eps 1e-8, weight decay wd, clip 1.0) at lr, cosine with 3 warmup steps, micro-batch B x K, the
 * first step's gradients written to dump (NULL: not), the curve into *curve (NULL: not kept). */
struct ft_model;
struct ft_lora;
struct ft_token_seqs;
ft_status ft_test_train_golden(struct ft_model *m, struct ft_lora *lora, const struct ft_token_seqs *seqs,
                               int64_t steps, int64_t B, int64_t K, double lr, double wd, const char *dump,
                               ft_test_curve *curve);
/* Runs a shell command, capturing stdout+stderr into *output (malloc'd). Returns the exit code
 * (or -1 if it could not run / was killed by a signal: *sig set). */
int ft_test_run(const char *cmd, char **output);
/* A generated part of a doc page: the text between "<!-- NAME:begin ... -->\n" and "<!-- NAME:end -->"
 * in SRC_DIR/doc must be what gen writes, or the check fails naming `command`, which prints it (and
 * writes the wanted text into the tmpdir). */
void ft_test_doc_section(const char *doc, const char *name, const char *command, void (*gen)(void *file));

/* Plans (harness_plan.c) of tests/fixtures/configs/CONFIG_DIR/config.json with the recipe keys
 * extra[n_extra] (KEY=VALUE, at most 14), on `device` or with the options po. */
struct ft_plan;
struct ft_plan_opts;
void ft_test_plan_cfg_opts(struct ft_plan *p, const char *config_dir, const struct ft_plan_opts *po,
                           const char *const *extra, int n_extra);
void ft_test_plan_cfg(struct ft_plan *p, const char *config_dir, const char *device, const char *const *extra,
                      int n_extra);
/* The number at j.a.b of a plan's JSON (`ftune plan --json`; b NULL: j.a), NAN where there is none. */
struct cJSON;
double ft_test_json_num(const struct cJSON *j, const char *a, const char *b);

#endif
