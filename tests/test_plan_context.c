/* test_plan_context.c: the longest context `ftune plan` offers, for the real models' configs
 * (tests/fixtures/configs): each figure fits and 256 tokens more does not, with the layer boundaries
 * on the device, in host memory, and in host memory with the MLP in slices (training.mlp_chunk);
 * the advice names the slices where host boundaries alone are not enough; on the GB10's unified
 * memory host boundaries are neither offered nor room. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/plan.h"

/* The longest context the report offers: it fits, 256 tokens more does not (the plan of that run,
 * made as `ftune plan --set data.seq_len=...` would); host-kept boundaries reach further. */
static void check_max_seq(void) {
    ft_plan *p = calloc(1, sizeof *p), *q = calloc(1, sizeof *q);
    const char *base[] = {"data.seq_len=4096", "training.micro_batch=2"};
    ft_test_plan_cfg(p, "Llama-3.3-70B-Instruct", "h100", base, 2);
    FT_CHECK(p->max_seq >= 4096 && p->max_seq_host > p->max_seq && p->max_seq % 256 == 0,
             "70B h100 micro-batch 2: longest %lld tokens, %lld with host boundaries", (long long)p->max_seq,
             (long long)p->max_seq_host);
    /* and with the MLP in slices too: what bounds the context then is attention's [N, H*D] buffers,
     * q/k/v and the norms' outputs, not gate, up and SwiGLU's [N, F] */
    FT_CHECK(p->max_seq_mlp > 2 * p->max_seq_host && p->max_seq_mlp % 256 == 0,
             "70B h100 micro-batch 2: longest %lld tokens with host boundaries and training.mlp_chunk %d (%lld without)",
             (long long)p->max_seq_mlp, FT_PLAN_MLP_CHUNK, (long long)p->max_seq_host);
    for (int host = 0; host < 3; host++)
        for (int more = 0; more < 2; more++) {
            char seq[64], hb[64], mc[64];
            snprintf(seq, sizeof seq, "data.seq_len=%lld",
                     (long long)((host == 2 ? p->max_seq_mlp : host ? p->max_seq_host : p->max_seq) + 256 * more));
            snprintf(hb, sizeof hb, "training.host_boundaries=%s", host ? "true" : "false");
            snprintf(mc, sizeof mc, "training.mlp_chunk=%d", host == 2 ? FT_PLAN_MLP_CHUNK : 0);
            const char *x[] = {seq, "training.micro_batch=2", hb, mc};
            ft_test_plan_cfg(q, "Llama-3.3-70B-Instruct", "h100", x, 4);
            FT_CHECK(q->fits == !more, "%s %s %s: fits %d", seq, hb, mc, q->fits);
            /* a run past what host boundaries alone fit is told of the slices */
            if (host == 1 && more)
                FT_CHECK(strstr(q->advice, "set training.mlp_chunk: 4096 (the MLP over 4096 tokens at a time)") != NULL,
                         "%s with host boundaries, not fitting: advice '%s'", seq, q->advice);
            if (host == 2 && !more)
                FT_CHECK(q->max_seq_mlp == 0 && q->mlp_chunk == FT_PLAN_MLP_CHUNK, "%s %s: max_seq_mlp %lld", seq, mc,
                         (long long)q->max_seq_mlp);
        }
    FT_CHECK(p->T == 4096 && p->fits && p->host_boundaries == 0 && p->mlp_chunk == 0,
             "the report's own run is unchanged");
    printf("ok   70B h100 micro-batch 2: longest context %lld tokens, %lld with host boundaries, %lld with them and "
           "training.mlp_chunk %d\n",
           (long long)p->max_seq, (long long)p->max_seq_host, (long long)p->max_seq_mlp, FT_PLAN_MLP_CHUNK);
    free(p);
    free(q);
}

/* The GB10's memory is the host's (ft_plan_device.unified): host boundaries are no more room there. Its
 * plan neither offers them nor reports a longest context with them; a recipe that asks for them has
 * them in its total (the pinned bytes on top of what the same run plans with the boundaries on the
 * device, less those, plus the two slots); the MLP in slices still lengthens the context. */
static void check_unified(void) {
    ft_plan *p = calloc(1, sizeof *p), *q = calloc(1, sizeof *q), *h = calloc(1, sizeof *h);
    const char *x[] = {"data.seq_len=65536", "training.micro_batch=1", "training.keep_layers=0"};
    ft_test_plan_cfg(p, "Llama-3.3-70B-Instruct", "gb10", x, 3);
    FT_CHECK(!p->fits && !strstr(p->advice, "host_boundaries") && p->max_seq_host == 0 && p->max_seq > 0 &&
                 p->max_seq_mlp > p->max_seq,
             "gb10 65536 tokens: fits %d, advice '%s', longest %lld / host %lld / slices %lld", p->fits, p->advice,
             (long long)p->max_seq, (long long)p->max_seq_host, (long long)p->max_seq_mlp);
    ft_test_plan_cfg(q, "Llama-3.3-70B-Instruct", "h100", x, 3);
    FT_CHECK(strstr(q->advice, "host_boundaries") && q->max_seq_host > q->max_seq,
             "h100 65536 tokens: advice '%s', host %lld", q->advice, (long long)q->max_seq_host);
    const char *xh[] = {"data.seq_len=65536", "training.micro_batch=1", "training.keep_layers=0",
                        "training.host_boundaries=true"};
    ft_test_plan_cfg(h, "Llama-3.3-70B-Instruct", "gb10", xh, 4);
    const int64_t slots = 2 * 65536LL * 8192 * 2, all = 81 * 65536LL * 8192 * 2;
    FT_CHECK(h->pinned_bytes == 79 * 65536LL * 8192 * 2 && h->train_bytes == p->train_bytes - all + slots + h->pinned_bytes,
             "gb10 with host boundaries: train %lld, without %lld, pinned %lld", (long long)h->train_bytes,
             (long long)p->train_bytes, (long long)h->pinned_bytes);
    printf("ok   gb10 (unified): no host boundaries offered, longest context %lld tokens, %lld with training.mlp_chunk; "
           "asked for, they count in the total (%.1f GiB)\n",
           (long long)p->max_seq, (long long)p->max_seq_mlp, (double)h->train_bytes / (1 << 30));
    free(p);
    free(q);
    free(h);
}

/* Two-level recomputation (training.boundary_every) on the GB10, where host boundaries are no room:
 * the plan offers one layer's input in 9 of the 70B's 80 (ft_plan_segment), 18 boundaries instead of
 * 81 (inputs 0, 9, ..., 72, the top, and 8 slots), in its advice and in the longest context, which
 * then fits and 256 tokens more does not. */
static void check_segments(void) {
    ft_plan *p = calloc(1, sizeof *p), *q = calloc(1, sizeof *q);
    const char *x[] = {"data.seq_len=65536", "training.micro_batch=1", "training.keep_layers=0"};
    ft_test_plan_cfg(p, "Llama-3.3-70B-Instruct", "gb10", x, 3);
    FT_CHECK(p->seg_offer == 9 && p->max_seq_seg > p->max_seq_mlp && p->max_seq_seg % 256 == 0 &&
                 strstr(p->advice, "set training.boundary_every: 9 (the input of one layer in 9 kept"),
             "gb10 65536 tokens: offer %lld, longest %lld with it (%lld sliced alone), advice '%s'",
             (long long)p->seg_offer, (long long)p->max_seq_seg, (long long)p->max_seq_mlp, p->advice);
    for (int more = 0; more < 2; more++) {
        char seq[64];
        snprintf(seq, sizeof seq, "data.seq_len=%lld", (long long)(p->max_seq_seg + 256 * more));
        const char *y[] = {seq, "training.micro_batch=1", "training.keep_layers=0", "training.boundary_every=9",
                           "training.mlp_chunk=4096"};
        ft_test_plan_cfg(q, "Llama-3.3-70B-Instruct", "gb10", y, 5);
        FT_CHECK(q->fits == !more && q->line[FT_PLAN_BOUNDARIES].bytes == 18 * (p->max_seq_seg + 256 * more) * 8192 * 2 &&
                     q->boundary_every == 9 && q->max_seq_seg == 0 && !(fabs(q->seg_forward - 64.0 / 80.0) > 1e-12),
                 "gb10 %s boundary_every 9: fits %d, boundaries %lld bytes, forward again %.3f", seq, q->fits,
                 (long long)q->line[FT_PLAN_BOUNDARIES].bytes, q->seg_forward);
    }
    printf("ok   gb10 70B: training.boundary_every %lld offered, longest context %lld tokens with it (%lld without)\n",
           (long long)p->seg_offer, (long long)p->max_seq_seg, (long long)p->max_seq_mlp);
    free(p);
    free(q);
}

int main(void) {
    check_max_seq();
    check_unified();
    check_segments();
    return ft_test_finish();
}
