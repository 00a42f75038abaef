/* plan_json.c: `ftune plan --json`: the plan as one JSON object, for the script that submits the
 * overnight job (does it fit, how long, which knob), so nothing has to parse the aligned report.
 * Every figure is the report's own field of ft_plan, in bytes and seconds; absent ones are null. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "trainer/plan.h"

static void pj_num(cJSON *o, const char *k, double v) { cJSON_AddNumberToObject(o, k, v); }
/* A count or byte figure, null when not known (< 0) or not offered (0 where zero means none). */
static void pj_opt(cJSON *o, const char *k, double v, double none_below) {
    if (v < none_below) cJSON_AddNullToObject(o, k);
    else cJSON_AddNumberToObject(o, k, v);
}

static cJSON *pj_offer(const struct ft_plan_offer *of, int64_t B, int64_t K) {
    cJSON *o = cJSON_CreateObject();
    pj_num(o, "micro_batch", (double)(of->B > 0 ? of->B : B));
    pj_num(o, "grad_accum", (double)(of->B > 0 ? of->K : K));
    pj_num(o, "keep_layers", (double)of->kept);
    cJSON_AddBoolToObject(o, "keep_attention", of->attn);
    pj_num(o, "bytes", (double)of->bytes);
    pj_num(o, "tokens_per_s", of->tokens_per_s);
    return o;
}

ft_status ft_plan_json(const ft_plan *p, const ft_recipe *r, char **out) {
    *out = NULL;
    cJSON *j = cJSON_CreateObject();
    if (!j) return FT_ERR(FT_E_OOM, "out of memory");
    cJSON_AddStringToObject(j, "recipe", r->source);
    cJSON_AddStringToObject(j, "config", p->config_path);
    cJSON_AddBoolToObject(j, "fits", p->fits);
    if (p->fits) cJSON_AddNullToObject(j, "advice");
    else cJSON_AddStringToObject(j, "advice", p->advice);

    cJSON *dev = cJSON_AddObjectToObject(j, "device");
    cJSON_AddStringToObject(dev, "name", p->dev.name);
    cJSON_AddStringToObject(dev, "description", p->dev.desc);
    pj_num(dev, "memory_bytes", (double)p->device_bytes);
    if (p->mem_source) cJSON_AddStringToObject(dev, "memory_from", p->mem_source);
    else cJSON_AddNullToObject(dev, "memory_from");
    pj_num(dev, "peak_tflops", p->dev.peak_tflops);
    cJSON_AddStringToObject(dev, "rates", p->dev.rates ? p->dev.rates : "");

    cJSON *run = cJSON_AddObjectToObject(j, "run");
    pj_num(run, "micro_batch", (double)p->B);
    pj_num(run, "grad_accum", (double)p->K);
    pj_num(run, "seq_len", (double)p->T);
    pj_num(run, "tokens_per_step", (double)p->tokens_per_step);
    pj_num(run, "lora_r", (double)p->R);
    pj_num(run, "lora_parameters", (double)p->lora_params);
    cJSON_AddBoolToObject(run, "recompute", p->recompute);
    pj_num(run, "keep_layers", (double)p->keep_layers);
    pj_num(run, "mlp_chunk", (double)p->mlp_chunk);
    cJSON_AddBoolToObject(run, "keep_attention", p->keep_attention);
    cJSON_AddBoolToObject(run, "host_boundaries", p->host_boundaries);
    pj_opt(run, "steps", (double)p->steps, 1); /* null: epochs without a dataset index */
    pj_opt(run, "total_tokens", p->steps > 0 ? (double)p->total_tokens : -1, 0);

    cJSON *mem = cJSON_AddObjectToObject(j, "memory");
    pj_num(mem, "total_bytes", (double)p->total_bytes);
    pj_num(mem, "train_bytes", (double)p->train_bytes);
    pj_num(mem, "load_bytes", (double)p->load_bytes);
    pj_num(mem, "host_bytes", (double)p->host_bytes);
    pj_num(mem, "pinned_bytes", (double)p->pinned_bytes);
    cJSON *lines = cJSON_AddArrayToObject(mem, "lines");
    for (int i = 0; i < FT_PLAN_NLINES; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "name", p->line[i].name);
        cJSON_AddStringToObject(l, "detail", p->line[i].detail);
        pj_num(l, "bytes", (double)p->line[i].bytes);
        cJSON_AddItemToArray(lines, l);
    }
    /* what the memory left over buys (the report's training.keep_layers / micro_batch lines) */
    cJSON *offers = cJSON_AddArrayToObject(mem, "offers");
    if (p->kept.kept > 0) cJSON_AddItemToArray(offers, pj_offer(&p->kept, p->B, p->K));
    if (p->kept_mb.B > 0) cJSON_AddItemToArray(offers, pj_offer(&p->kept_mb, p->B, p->K));
    pj_opt(mem, "longest_seq_len", (double)p->max_seq, 1);
    pj_opt(mem, "longest_seq_len_host_boundaries", (double)p->max_seq_host, 1);
    pj_opt(mem, "longest_seq_len_mlp_chunk", (double)p->max_seq_mlp, 1);
    pj_opt(mem, "longest_seq_len_boundary_every", (double)p->max_seq_seg, 1); /* at boundary_every_offered, sliced */
    pj_opt(mem, "boundary_every_offered", (double)p->seg_offer, 1);

    cJSON *t = cJSON_AddObjectToObject(j, "time");
    pj_num(t, "flops_per_token", p->flops_per_token);
    pj_num(t, "flops_per_token_full_recompute", p->flops_full);
    pj_num(t, "tokens_per_s", p->tokens_per_s);
    pj_num(t, "tflops", p->tflops);
    cJSON_AddBoolToObject(t, "flat_rate", p->flat);
    pj_num(t, "micro_batch_s", p->micro_s);
    pj_num(t, "step_s", p->step_s);
    cJSON *parts = cJSON_AddArrayToObject(t, "parts"); /* per micro-batch; the optimizer's per step */
    for (int i = 0; i < FT_PLAN_NTIMES && !p->flat; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", p->time[i].name);
        pj_num(o, "s", p->time[i].s);
        cJSON_AddItemToArray(parts, o);
    }
    cJSON *ev = cJSON_AddObjectToObject(t, "evaluations");
    pj_num(ev, "count", (double)p->n_evals);
    pj_opt(ev, "validation_tokens", (double)p->eval_tokens, 0); /* null: unknown until `ftune data` */
    pj_num(ev, "validation_s", p->eval_valid_s);
    pj_num(ev, "generation_s", p->eval_gen_s);
    pj_num(ev, "total_s", p->eval_s);
    /* null without a step count: the report then gives a time per million tokens */
    pj_opt(t, "estimated_s", p->steps > 0 ? p->hours * 3600.0 : -1, 0);
    if (r->training.max_hours > 0 && p->steps > 0) { /* training.max_hours; else null */
        cJSON *lim = cJSON_AddObjectToObject(t, "time_limit");
        pj_num(lim, "max_hours", r->training.max_hours);
        pj_num(lim, "steps_per_job", (double)p->job_steps);
        pj_num(lim, "jobs", (double)p->jobs);
        cJSON_AddBoolToObject(lim, "shorter_than_a_step", p->job_short);
    } else {
        cJSON_AddNullToObject(t, "time_limit");
    }

    cJSON *disk = cJSON_AddObjectToObject(j, "disk");
    cJSON_AddStringToObject(disk, "dir", p->disk_dir);
    pj_num(disk, "checkpoint_bytes", (double)p->disk_ckpt);
    pj_num(disk, "checkpoints", (double)p->disk_ckpts);
    pj_num(disk, "adapter_bytes", (double)p->disk_adapter);
    pj_num(disk, "merged_bytes", (double)p->disk_merged);
    pj_num(disk, "total_bytes", (double)p->disk_total);
    pj_opt(disk, "free_bytes", (double)p->disk_free, 0);
    if (p->disk_free >= 0) cJSON_AddBoolToObject(disk, "fits", p->disk_total <= p->disk_free);
    else cJSON_AddNullToObject(disk, "fits");

    *out = cJSON_Print(j);
    cJSON_Delete(j);
    return *out ? FT_OK : FT_ERR(FT_E_OOM, "out of memory");
}
