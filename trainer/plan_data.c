/* plan_data.c: what `ftune plan` reads from disk: the tokenized dataset, when a run has cached one,
 * and the room output_dir's filesystem has for what the run writes.
 *
 * An epochs-based recipe (training.steps = 0) needs the dataset's token count. It is read from the
 * tokenized dataset's index (data/shard.h: n_tokens, n_examples) a run caches as
 * <output_dir>/data/train-<fingerprint>.index.json (trainer/dataset.h; the newest one), so a plan
 * after a first run, or after `ftune data`, knows the step count; rows are estimated from the
 * average example length and data.seq_len. Without an index the step count is reported unknown.
 *
 * Packed rows hold several documents, and a token attends only to its own document's earlier
 * tokens (ft_op_attention's doc_start), so a row's attention costs sum(l_i^2) over its documents
 * instead of T^2. The FLOPs' A_fwd = 2 L H D S then takes for S the mean, over tokens, of the length
 * of the document each token sits in: sum(min(l, T)^2) / sum(min(l, T)) over the examples (longer
 * ones truncated to T, or left out with data.long_examples: drop). The index's length buckets
 * (data/shard.h "lengths") give it without reading the shards: exactly where T is a power of two
 * (the buckets' edges), else with the bucket holding T bounded by T x its tokens (and with
 * data.long_examples: drop, its share below T taken as uniform). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "data/shard.h"
#include "export/merge.h"
#include "trainer/checkpoint.h"
#include "trainer/plan_impl.h"

/* S from the "lengths" buckets [min, examples, tokens, sum of squares] for rows of T tokens; 0 when
 * the array is missing or malformed (an index written before the buckets). */
static double pd_attn_len(const cJSON *lens, int64_t T, int drop_long) {
    double num = 0.0, den = 0.0;
    const cJSON *b;
    if (!cJSON_IsArray(lens) || cJSON_GetArraySize(lens) == 0) return 0.0;
    cJSON_ArrayForEach(b, lens) {
        double v[4];
        if (cJSON_GetArraySize(b) != 4) return 0.0;
        for (int i = 0; i < 4; i++) {
            const cJSON *x = cJSON_GetArrayItem(b, i);
            if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0)) return 0.0;
            v[i] = x->valuedouble;
        }
        const double lo = v[0], hi = 2.0 * v[0], n = v[1], tok = v[2], sq = v[3], t = (double)T;
        if (hi <= t) { /* every length < T */
            num += sq, den += tok;
        } else if (lo >= t) { /* every length >= T: truncated to T, or dropped (one of exactly T is not: taken
                               * as dropped) */
            if (!drop_long) num += n * t * t, den += n * t;
        } else if (!drop_long) { /* T inside the bucket: min(l, T)^2 <= min(l^2, l T) */
            num += fmin(sq, t * tok), den += fmin(tok, n * t);
        } else { /* the lengths <= T kept: between none and all of the bucket's, taken as the share below T */
            const double f = (t - lo + 1.0) / (hi - lo);
            num += f * sq, den += f * tok;
        }
    }
    return den > 0 ? fmin(num / den, (double)T) : 0.0;
}

/* Adds the index's totals to *tokens and *examples and returns 1, or 0 if it cannot be read; *bytes gets
 * its shards' size on disk, *attn_len pd_attn_len's S (0 without buckets). */
static int pd_read_index(const char *path, int64_t T, int drop_long, int64_t *tokens, int64_t *examples,
                         int64_t *bytes, double *attn_len) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf); /* the totals and lengths come before the (possibly long, then cut) shard list */
    if (!j) {
        char *cut = strstr(buf, "\"shards\"");
        if (cut) strcpy(cut, "\"x\": 0}");
        j = cJSON_Parse(buf);
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "n_tokens"), *e = cJSON_GetObjectItemCaseSensitive(j, "n_examples");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(j, "bytes");
    int ok = cJSON_IsNumber(t) && cJSON_IsNumber(e);
    if (ok && cJSON_IsNumber(by)) *bytes = (int64_t)by->valuedouble;
    if (ok) *tokens += (int64_t)t->valuedouble, *examples += (int64_t)e->valuedouble;
    *attn_len = ok ? pd_attn_len(cJSON_GetObjectItemCaseSensitive(j, "lengths"), T, drop_long) : 0.0;
    cJSON_Delete(j);
    return ok;
}

/* The newest <output_dir>/data/train-<fingerprint>.index.json (trainer/dataset.c's cache). */
static int pd_newest_index(const char *output_dir, char *out, size_t cap) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data", output_dir);
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    time_t best = 0;
    int found = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "train-", 6) != 0 || l < 17 || strcmp(e->d_name + l - 11, ".index.json") != 0) continue;
        char p[4500];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) == 0 && (!found || sb.st_mtime > best)) {
            best = sb.st_mtime, found = 1;
            snprintf(out, cap, "%s", p);
        }
    }
    closedir(dp);
    return found;
}

void ft_plan_data(ft_plan *p, const ft_recipe *r, double attn_len) {
    p->data_tokens = p->data_examples = p->data_bytes = 0;
    p->data_index[0] = 0;
    double S = 0.0;
    const int drop = strcmp(r->data.long_examples, "drop") == 0;
    if (!(pd_newest_index(r->output_dir, p->data_index, sizeof p->data_index) &&
          pd_read_index(p->data_index, p->T, drop, &p->data_tokens, &p->data_examples, &p->data_bytes, &S)))
        p->data_index[0] = 0;
    p->attn_len = (double)p->T;
    if (attn_len > 0) {
        p->attn_len = fmin(attn_len, (double)p->T);
        snprintf(p->attn_len_from, sizeof p->attn_len_from, "packed rows of %.0f-token documents", p->attn_len);
    } else if (!p->packed) {
        snprintf(p->attn_len_from, sizeof p->attn_len_from, "one document a row");
    } else if (S > 0) {
        p->attn_len = S;
        snprintf(p->attn_len_from, sizeof p->attn_len_from, "packed: the mean document a token sits in (dataset index)");
    } else {
        snprintf(p->attn_len_from, sizeof p->attn_len_from, "packed rows as one document each, an upper bound (%s)",
                 p->data_index[0] ? "an index without lengths" : "`ftune data` counts the documents");
    }
}

/* Packed rows of T tokens, approximately: whole examples per row, and at least tokens / T rows. */
static double pd_rows(const ft_plan *p, const ft_recipe *r, int64_t tokens, int64_t examples) {
    double avg = examples > 0 ? (double)tokens / (double)examples : 1.0, per_row = floor((double)p->T / avg);
    if (per_row < 1 || strcmp(r->data.packing, "none") == 0) per_row = 1;
    return fmax(ceil((double)tokens / (double)p->T), ceil((double)examples / per_row));
}

void ft_plan_steps(ft_plan *p, const ft_recipe *r) {
    /* the validation split's index beside the training one (same fingerprint): its rows */
    p->valid_rows = 0;
    if (p->data_index[0]) {
        char vpath[sizeof p->data_index];
        snprintf(vpath, sizeof vpath, "%s", p->data_index);
        char *base = strrchr(vpath, '/');
        base = base ? base + 1 : vpath;
        int64_t vt = 0, ve = 0, vb = 0;
        double vs = 0;
        const int drop = strcmp(r->data.long_examples, "drop") == 0;
        if (strncmp(base, "train-", 6) == 0) {
            memcpy(base, "valid", 5); /* train-<fp>.index.json -> valid-<fp>.index.json */
            if (pd_read_index(vpath, p->T, drop, &vt, &ve, &vb, &vs) && ve > 0) p->valid_rows = pd_rows(p, r, vt, ve);
        }
    }
    if (r->training.steps > 0) {
        p->steps = r->training.steps;
        snprintf(p->steps_from, sizeof p->steps_from, "training.steps");
        return;
    }
    if (!p->data_index[0]) {
        p->steps = 0;
        snprintf(p->steps_from, sizeof p->steps_from,
                 "unknown: training.epochs %g and no tokenized dataset index (set training.steps)", r->training.epochs);
        return;
    }
    const int64_t tokens = p->data_tokens, examples = p->data_examples;
    const double rows = pd_rows(p, r, tokens, examples);
    /* (the cached index is the train split already: no val_fraction to take off) */
    p->steps = (int64_t)ceil(r->training.epochs * rows / (double)(p->B * p->K));
    if (p->steps < 1) p->steps = 1;
    snprintf(p->steps_from, sizeof p->steps_from, "%g epochs of ~%.0f rows, %lld examples, %lld tokens: %s",
             r->training.epochs, rows, (long long)examples, (long long)tokens, p->data_index);
}

/* ---- disk ---------------------------------------------------------------------------------- */

/* Bytes free to an unprivileged writer on the filesystem of path, or of its nearest existing parent
 * (output_dir is made by the run); -1 when none can be asked. The directory asked goes to dir. */
static int64_t pd_free_bytes(const char *path, char *dir, size_t cap) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path && path[0] ? path : ".");
    for (;;) {
        struct statvfs v;
        if (statvfs(p, &v) == 0) {
            snprintf(dir, cap, "%s", p);
            /* a filesystem that reports no size at all (some FUSE and network ones) tells nothing */
            return v.f_blocks > 0 ? (int64_t)v.f_bavail * (int64_t)v.f_frsize : -1;
        }
        char *slash = strrchr(p, '/');
        if (!slash) {
            if (strcmp(p, ".") == 0) return -1;
            snprintf(p, sizeof p, ".");
        } else if (slash == p) {
            if (!p[1]) return -1;
            p[1] = 0; /* "/" */
        } else {
            *slash = 0;
        }
    }
}

void ft_plan_disk(ft_plan *p, const ft_recipe *r) {
    const int64_t n = p->lora_params;
    /* checkpoints: keep of them, and the next is written before the oldest goes */
    p->disk_ckpt = ft_ckpt_max_bytes(n);
    p->disk_ckpts = r->checkpoint.keep + 1;
    /* the final adapter: PEFT safetensors in f32 (always), and the llama.cpp GGUF one in f32; each
     * tensor's (A and B of every targeted module) name, shape and offset well under 256 bytes */
    const int gguf = r->exports.formats && strstr(r->exports.formats, "gguf") != NULL;
    int64_t mods = 0;
    for (int m = 0; m < FT_MOD_COUNT; m++) mods += (p->targets >> m) & 1u;
    /* and best/'s PEFT adapter, kept while validation losses come in (eval.keep_best) */
    const int best = r->eval.keep_best && (r->data.n_valid > 0 || r->data.val_fraction > 0);
    p->disk_adapter = (1 + gguf + best) * (4 * n + 256 * 2 * mods * p->dims.L + 4096);
    p->disk_merged = 0;
    ft_merge_kind kind;
    int64_t tensors = 0;
    if (r->exports.merged && r->exports.merged[0] && ft_merge_kind_parse(r->exports.merged, &kind) &&
        ft_merge_output_tensor_bytes(r->model.path, &p->cfg, kind, &tensors, NULL) == FT_OK)
        /* and the header: metadata and the vocabulary (tokens, scores, types, BPE merges), about */
        p->disk_merged = tensors + p->cfg.vocab_size * 64 + (64 << 10);
    else
        ft_error_clear();
    p->disk_total = p->disk_ckpts * p->disk_ckpt + p->disk_adapter + p->disk_merged + p->data_bytes;
    p->disk_free = pd_free_bytes(r->output_dir, p->disk_dir, sizeof p->disk_dir);
}
