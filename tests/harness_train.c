/* harness_train.c: the training goldens' shared pieces (test_train_golden.c, test_train_tokens.c,
 * test_train_dora.c): a run's curve as the trainer reports it, and the reference curve as
 * tests/ref/make_train_golden.py and the scripts built on it write it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/train.h"

ft_status ft_test_capture(void *user, const ft_step_info *s) {
    ft_test_curve *c = user;
    if (c->n < FT_TEST_CURVE_MAX) {
        c->loss[c->n] = s->loss, c->lr[c->n] = s->lr, c->grad_norm[c->n] = s->grad_norm;
        c->targets[c->n] = s->targets;
        c->n++;
    }
    return FT_OK;
}

double ft_test_rel(double a, double ref) { return ref != 0 ? fabs(a - ref) / fabs(ref) : fabs(a - ref); }

int64_t ft_test_json_array(const char *path, const char *key, double *out, int64_t cap) {
    char *txt = NULL;
    if (ft_test_read_file(path, &txt, NULL) != FT_OK) return -1;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    int64_t n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    for (int64_t i = 0; i < n && i < cap; i++) out[i] = cJSON_GetArrayItem(a, (int)i)->valuedouble;
    cJSON_Delete(j);
    return n;
}

ft_status ft_test_train_golden(ft_model *m, ft_lora *lora, const ft_token_seqs *seqs, int64_t steps, int64_t B,
                               int64_t K, double lr, double wd, const char *dump, ft_test_curve *curve) {
    ft_train_cfg cfg = {.steps = steps, .micro_batch = B, .grad_accum = K, .dump_grads = dump};
    cfg.sched = (ft_schedule){.type = FT_SCHED_COSINE, .lr = lr, .warmup = 3, .total = steps};
    cfg.opt = (ft_adamw_cfg){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = wd, .clip = 1.0};
    ft_test_curve local;
    if (!curve) curve = &local;
    memset(curve, 0, sizeof *curve);
    return ft_train_tokens(m, lora, seqs, &cfg, ft_test_capture, curve);
}

int64_t ft_test_read_curve(const char *path, ft_test_curve *c) {
    memset(c, 0, sizeof *c);
    double v[4][FT_TEST_CURVE_MAX];
    static const char *const keys[4] = {"loss", "lr", "grad_norm", "targets"};
    int64_t n = -1;
    for (int k = 0; k < 4; k++) {
        int64_t len = ft_test_json_array(path, keys[k], v[k], FT_TEST_CURVE_MAX);
        if (len < 0) len = 0;
        if (len > FT_TEST_CURVE_MAX) len = FT_TEST_CURVE_MAX;
        if (n < 0 || len < n) n = len;
    }
    for (int64_t i = 0; i < n; i++) {
        c->loss[i] = v[0][i], c->lr[i] = v[1][i], c->grad_norm[i] = v[2][i];
        c->targets[i] = (int64_t)v[3][i];
    }
    c->n = n < 0 ? 0 : n;
    return c->n;
}
