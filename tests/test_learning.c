/* test_learning.c: LoRA on the pretrained stories260K model (NF4 base) learns: after a few
 * dozen steps on a small set of stories in one recurring style, the loss on HELD-OUT stories of
 * the same style drops by a clear margin, while the base model without the adapter gives
 * bit-identical logits before and after training (the base stays frozen). */
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "tests/harness.h"
#include "trainer/loader.h"
#include "trainer/train.h"

static const char *const train_text[] = {
    "Tom the cat had a red ball. Every day Tom took the red ball to the big tree and played.",
    "Tom the cat liked the big tree. He sat under the big tree with his red ball and purred.",
    "One day Tom the cat lost his red ball. He looked under the big tree and found it. Tom was happy.",
    "Tom the cat ran to the big tree. His red ball rolled away. Tom ran after the red ball.",
    "Tom the cat and his red ball went to the big tree. Tom played all day and then he slept.",
    "Tom the cat saw a bird in the big tree. He dropped his red ball and looked up at the bird.",
    "Tom the cat had a friend. The friend liked the red ball too. They played at the big tree.",
    "Tom the cat was sad. His red ball was stuck in the big tree. A bird helped Tom get the ball.",
};
static const char *const heldout_text[] = {
    "Tom the cat took his red ball to the big tree. He played with the red ball and was happy.",
    "Tom the cat sat under the big tree. His red ball was next to him. Tom purred and slept.",
    "One day Tom the cat saw his red ball in the big tree. Tom climbed the tree and got the ball.",
};

static ft_status encode_all(const ft_tok *tok, const char *const *texts, int n, ft_token_seqs *out) {
    ft_tok_ids all = {0};
    int64_t *start = calloc((size_t)n + 1, 8);
    for (int i = 0; i < n; i++) {
        FT_TRY(ft_tok_encode_append(tok, texts[i], (int64_t)strlen(texts[i]), 1, &all));
        start[i + 1] = all.n;
    }
    out->ids = all.ids, out->start = start, out->n = n;
    return FT_OK;
}

static double heldout_loss(ft_model *m, const ft_token_seqs *s) {
    double loss = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < s->n; i++) {
        int64_t T = s->start[i + 1] - s->start[i];
        const int32_t *ids = s->ids + s->start[i];
        int32_t *labels = malloc((size_t)T * 4);
        for (int64_t t = 0; t < T; t++) labels[t] = t + 1 < T ? ids[t + 1] : -100;
        ft_batch b = {.B = 1, .T = T, .tokens = ids, .labels = labels};
        FT_CHECK_OK(ft_model_step(m, &b, 0.0f, 0, &loss, &n));
        free(labels);
    }
    return loss / (double)n;
}

int main(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/stories260K", ft_test_src_dir());
    ft_backend *be = NULL;
    ft_model *m = NULL;
    ft_tok *tok = NULL;
    ft_lora *lora = NULL;
    ft_token_seqs train = {0}, held = {0};
    ft_load_opts lo = {.quant = FT_QUANT_NF4, .model = {.recompute = 1}};
    FT_CHECK_OK(ft_backend_cpu_create(&be, 0));
    FT_CHECK_OK(ft_model_load(&m, be, dir, &lo));
    FT_CHECK_OK(ft_tok_load(&tok, dir));
    if (!m || !tok) return ft_test_finish();
    FT_CHECK_OK(encode_all(tok, train_text, 8, &train));
    FT_CHECK_OK(encode_all(tok, heldout_text, 3, &held));

    /* base logits before training, for the frozen-base check */
    int64_t V = ft_model_get_dims(m)->V, T0 = held.start[1];
    float *before = malloc((size_t)(T0 * V) * 4), *after = malloc((size_t)(T0 * V) * 4);
    ft_batch b0 = {.B = 1, .T = T0, .tokens = held.ids};
    FT_CHECK_OK(ft_model_logits(m, &b0, before));
    double base_loss = heldout_loss(m, &held);

    ft_lora_cfg lc = {.r = 8, .alpha = 16, .targets = FT_MOD_ALL, .seed = 7};
    ft_lora_shapes shapes = ft_model_lora_shapes(ft_model_get_dims(m));
    FT_CHECK_OK(ft_lora_create(&lora, be, &lc, &shapes, ft_model_get_dims(m)->L));
    ft_train_cfg tc = {.steps = 40, .micro_batch = 4, .grad_accum = 1, .seed = 7,
                       .sched = {.type = FT_SCHED_COSINE, .lr = 5e-3, .warmup = 4, .total = 40},
                       .opt = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 1.0}};
    FT_CHECK_OK(ft_train_tokens(m, lora, &train, &tc, NULL, NULL));
    ft_model_set_lora(m, lora);
    double tuned_loss = heldout_loss(m, &held);
    ft_model_set_lora(m, NULL);
    double base_again = heldout_loss(m, &held);
    FT_CHECK_OK(ft_model_logits(m, &b0, after));

    printf("held-out loss: base %.4f, with adapter %.4f (drop %.4f nats), base again %.4f\n", base_loss, tuned_loss,
           base_loss - tuned_loss, base_again);
    FT_CHECK(tuned_loss <= base_loss - 0.25, "held-out loss fell only from %.4f to %.4f (want a drop >= 0.25)",
             base_loss, tuned_loss);
    FT_CHECK(base_again == base_loss, "unadapted loss changed: %.9f -> %.9f", base_loss, base_again);
    FT_CHECK(memcmp(before, after, (size_t)(T0 * V) * 4) == 0, "unadapted logits changed after training");
    free(before);
    free(after);
    ft_lora_free(lora, be);
    ft_token_seqs_free(&train);
    ft_token_seqs_free(&held);
    ft_tok_free(tok);
    ft_model_free(m);
    ft_backend_free(be);
    return ft_test_finish();
}
