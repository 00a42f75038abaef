/* dataset.c: see dataset.h. The only trainer file that includes data/batcher.h. */
#include "trainer/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cjson/cJSON.h>

#include "data/batcher.h"
#include "data/chat_prompt.h"
#include "data/chat_template.h"
#include "data/jsonl.h"
#include "data/pack.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "trainer/dataset_tokenize.h"
#include "trainer/gguf_config.h"
#include "trainer/loader.h"

struct ft_dataset {
    ft_tok *tok;
    ft_render_opts ro;
    ft_data_format format;      /* of the first training file */
    ft_examples train, valid;
    ft_pack train_plan, valid_plan;
    ft_batcher *train_b, *valid_b;
    uint64_t train_hash;        /* the training examples' tokens and boundaries (ft_cursor_hash) */
    int64_t B, T;
    int32_t eos, eot;
    int64_t skipped;
    int cached;
    int threads;                /* encoding threads */
    int64_t records;            /* records read, kept + skipped */
    char first_error[512];
    double tokenize_seconds;
    char train_index[4200], valid_index[4200];
    char train_packing[256];
};

/* recipe spellings use '_' where the data layer's names use '-' ("prompt_completion", "mistral_v3") */
static void ft_dash(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src);
    for (char *p = dst; *p; p++)
        if (*p == '_') *p = '-';
}

/* ---- fingerprint -------------------------------------------------------------------------- */

/* Hashes the file, or its first `limit` bytes (limit >= 0). */
static ft_status ft_hash_file_upto(XXH3_state_t *h, const char *path, int required, int64_t limit) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (!required && errno == ENOENT) return FT_OK;
        return FT_ERR(FT_E_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    static const size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return FT_ERR(FT_E_OOM, "out of memory hashing %s", path);
    }
    size_t n;
    uint64_t len = 0;
    while ((n = fread(buf, 1, limit >= 0 && limit - (int64_t)len < (int64_t)cap ? (size_t)(limit - (int64_t)len) : cap,
                      f)) > 0) {
        XXH3_64bits_update(h, buf, n);
        len += n;
    }
    int err = ferror(f);
    free(buf);
    fclose(f);
    if (err) return FT_ERR(FT_E_IO, "%s: read failed", path);
    XXH3_64bits_update(h, &len, sizeof len); /* separates one file from the next */
    return FT_OK;
}

static ft_status ft_hash_file(XXH3_state_t *h, const char *path, int required) {
    return ft_hash_file_upto(h, path, required, -1);
}

static void ft_hash_str(XXH3_state_t *h, const char *s) { XXH3_64bits_update(h, s ? s : "", strlen(s ? s : "") + 1); }

/* Identity of everything that decides the tokenized examples and the split. */
static ft_status ft_fingerprint(const ft_recipe *r, const ft_dataset *ds, const char *tok_dir, uint64_t *out) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return FT_ERR(FT_E_OOM, "out of memory");
    XXH3_64bits_reset(h);
    ft_status st = FT_OK;
    char path[4096];
    /* the pipeline's version: raised when the same inputs would now give other examples or another
     * index, so that a cache from an older build is made again (2: a \u0000 in a record's strings is
     * malformed; the index records example lengths; 3: the template as resolved and its text, which
     * may come from chat_template.jinja or .json beside the tokenizer, not only tokenizer_config.json) */
    ft_hash_str(h, "ftune-data/3");
    ft_hash_str(h, ft_chat_template_name(ds->ro.tmpl));
    ft_hash_str(h, ft_tok_chat_template(ds->tok));
    if (ft_is_gguf_file(tok_dir)) { /* a GGUF model: its header (the tokenizer's keys among it), not 40 GB of weights */
        ft_gguf *g = NULL;
        FT_CHECK_GOTO(st, ft_gguf_open(&g, tok_dir), done);
        const int64_t header = ft_gguf_data_offset(g);
        ft_gguf_close(g);
        FT_CHECK_GOTO(st, ft_hash_file_upto(h, tok_dir, 1, header), done);
    } else {
        snprintf(path, sizeof path, "%s/tokenizer.json", tok_dir);
        FT_CHECK_GOTO(st, ft_hash_file(h, path, 1), done);
        snprintf(path, sizeof path, "%s/tokenizer_config.json", tok_dir);
        FT_CHECK_GOTO(st, ft_hash_file(h, path, 0), done);
    }
    for (int i = 0; i < r->data.n_train; i++) {
        ft_hash_str(h, "train");
        FT_CHECK_GOTO(st, ft_hash_file(h, r->data.train[i], 1), done);
    }
    for (int i = 0; i < r->data.n_valid; i++) {
        ft_hash_str(h, "valid");
        FT_CHECK_GOTO(st, ft_hash_file(h, r->data.valid[i], 1), done);
    }
    char num[64];
    ft_hash_str(h, r->data.format);
    ft_hash_str(h, r->data.template_name);
    ft_hash_str(h, r->data.loss);
    ft_hash_str(h, r->data.on_error);
    if (r->data.n_valid == 0) { /* the held-out split depends on these */
        snprintf(num, sizeof num, "%a/%lld", r->data.val_fraction, (long long)r->training.seed);
        ft_hash_str(h, num);
    }
    *out = XXH3_64bits_digest(h);
done:
    XXH3_freeState(h);
    return st;
}

/* ---- tokenization ------------------------------------------------------------------------- */

static ft_status ft_resolve_template(ft_dataset *ds, const ft_recipe *r) {
    char name[64];
    ft_dash(name, sizeof name, r->data.template_name);
    if (strcmp(name, "auto") == 0) {
        const char *jinja = ft_tok_chat_template(ds->tok);
        ds->ro.tmpl = FT_TMPL_NONE;
        if (jinja && ft_chat_template_detect(jinja, &ds->ro.tmpl) != FT_OK) {
            ft_warn("data.template: the chat template beside %s (tokenizer_config.json, chat_template.jinja or .json) is "
                    "not one ftune knows; rendering without a template (set data.template to use one: %s)",
                    ft_tok_path(ds->tok), ft_chat_template_list());
            ft_error_clear();
            ds->ro.tmpl = FT_TMPL_NONE;
        }
        return FT_OK;
    }
    ft_status st = ft_chat_template_parse(name, &ds->ro.tmpl);
    if (st != FT_OK) return ft_error_wrap(st, "data.template");
    /* a template named in the recipe that is not the tokenizer's own: after export, llama.cpp and
     * Ollama prompt the model the tokenizer's way (its template goes into the GGUF), so the
     * adapter learns one format and is used with another (a Mistral Small 3 trained as Nemo) */
    const char *jinja = ft_tok_chat_template(ds->tok);
    ft_chat_template own;
    if (ds->ro.tmpl != FT_TMPL_NONE && jinja && ft_chat_template_detect(jinja, &own) == FT_OK && own != ds->ro.tmpl)
        ft_warn("data.template: %s, but the chat template beside %s is %s's: the exported model will be prompted in "
                "that format (data.template: auto follows it)", ft_chat_template_name(ds->ro.tmpl), ft_tok_path(ds->tok),
                ft_chat_template_name(own));
    ft_error_clear();
    return FT_OK;
}

/* Reads, renders and encodes every record of the files into ex (dataset_tokenize.h: on
 * ds->threads threads, with the result of doing it one record at a time). */
static ft_status ft_tokenize(ft_dataset *ds, const ft_recipe *r, char *const *files, int n_files, ft_examples *ex) {
    ft_tokenize_job job = {.tok = ds->tok, .ro = &ds->ro, .threads = ds->threads, .format = ds->format,
                           .records = ds->records, .skipped = ds->skipped};
    job.jo.fatal = strcmp(r->data.on_error, "fatal") == 0;
    char fmt[64];
    ft_dash(fmt, sizeof fmt, r->data.format);
    ft_status st = ft_data_format_parse(fmt, &job.jo.format);
    if (st != FT_OK) return ft_error_wrap(st, "data.format");
    snprintf(job.first_error, sizeof job.first_error, "%s", ds->first_error);
    st = ft_tokenize_files(&job, files, n_files, ex);
    ds->format = job.format;
    ds->records = job.records, ds->skipped = job.skipped;
    snprintf(ds->first_error, sizeof ds->first_error, "%s", job.first_error);
    ds->tokenize_seconds += job.seconds;
    return st;
}

static ft_status ft_write_shards(const char *dir, const char *name, const char *fp, const ft_examples *ex,
                                 int threads) {
    ft_shard_writer *w = NULL;
    /* zstd on one thread took 10 s of a 1 GB chat file's 67 s (docs/perf.md): shards are
     * compressed in parallel, byte for byte the same */
    ft_shard_writer_opts o = {.fingerprint = fp, .threads = threads};
    FT_TRY(ft_shard_writer_open(&w, dir, name, &o));
    ft_status st = ft_shard_writer_add_all(w, ex);
    if (st != FT_OK) {
        ft_shard_writer_abort(w);
        return st;
    }
    return ft_shard_writer_finish(w);
}

/* Examples from the cache when its index matches the fingerprint, else tokenized and cached. */
static ft_status ft_load_or_tokenize(ft_dataset *ds, const ft_recipe *r, const char *data_dir, uint64_t fp) {
    char fps[64], tname[64], vname[64], tidx[4200], vidx[4200];
    snprintf(fps, sizeof fps, "ftune-data/1 %016llx", (unsigned long long)fp);
    snprintf(tname, sizeof tname, "train-%016llx", (unsigned long long)fp);
    snprintf(vname, sizeof vname, "valid-%016llx", (unsigned long long)fp);
    snprintf(tidx, sizeof tidx, "%s/%s.index.json", data_dir, tname);
    snprintf(vidx, sizeof vidx, "%s/%s.index.json", data_dir, vname);
    snprintf(ds->train_index, sizeof ds->train_index, "%s", tidx);
    snprintf(ds->valid_index, sizeof ds->valid_index, "%s", vidx);
    struct stat sb;
    if (stat(tidx, &sb) == 0 && stat(vidx, &sb) == 0) {
        ft_shard_info ti, vi;
        ft_status st = ft_shards_load_threads(tidx, fps, ds->threads, &ds->train, &ti);
        if (st == FT_OK) st = ft_shards_load_threads(vidx, fps, ds->threads, &ds->valid, &vi);
        if (st == FT_OK) {
            ds->cached = 1;
            ft_info("data: reusing tokenized data %s (%lld + %lld examples)", tname, (long long)ds->train.n,
                    (long long)ds->valid.n);
            /* the format decides how prompts render; read it from the first record cheaply */
            char fmt[64];
            ft_dash(fmt, sizeof fmt, r->data.format);
            if (ft_data_format_parse(fmt, &ds->format) != FT_OK) ft_error_clear();
            if (ds->format == FT_FMT_AUTO) {
                ft_jsonl *jl = NULL;
                const ft_record *rec = NULL;
                if (ft_jsonl_open(&jl, r->data.train[0], NULL) == FT_OK && ft_jsonl_next(jl, &rec) == FT_OK && rec)
                    ds->format = rec->format;
                ft_jsonl_close(jl);
                ft_error_clear();
            }
            return FT_OK;
        }
        ft_warn("data: cached tokenized data is unusable (%s); tokenizing again", ft_error_msg());
        ft_error_clear();
        ft_examples_free(&ds->train);
        ft_examples_free(&ds->valid);
    }
    ft_examples all;
    ft_examples_init(&all);
    ft_status st = ft_tokenize(ds, r, r->data.train, r->data.n_train, &all);
    if (st == FT_OK && all.n == 0) /* before the valid files: the first error is the train files' */
        st = FT_ERR(FT_E_FORMAT, "data.train: no usable training examples in %s%s%s%s%s", r->data.train[0],
                    r->data.n_train > 1 ? " and the other files" : "",
                    ds->first_error[0] ? " (records were skipped; the first: " : "", ds->first_error,
                    ds->first_error[0] ? ")" : "");
    if (st == FT_OK && r->data.n_valid > 0) {
        ft_examples_init(&ds->valid);
        ds->train = all;
        ft_examples_init(&all);
        char train_first[sizeof ds->first_error];
        snprintf(train_first, sizeof train_first, "%s", ds->first_error);
        ds->first_error[0] = 0;
        st = ft_tokenize(ds, r, r->data.valid, r->data.n_valid, &ds->valid);
        /* files named for validation that hold none: an error, as for data.train, not a run that
         * quietly evaluates nothing */
        if (st == FT_OK && ds->valid.n == 0)
            st = FT_ERR(FT_E_FORMAT, "data.valid: no usable validation examples in %s%s%s%s%s", r->data.valid[0],
                        r->data.n_valid > 1 ? " and the other files" : "",
                        ds->first_error[0] ? " (records were skipped; the first: " : "", ds->first_error,
                        ds->first_error[0] ? ")" : "");
        if (train_first[0]) snprintf(ds->first_error, sizeof ds->first_error, "%s", train_first);
    } else if (st == FT_OK) {
        /* moved, not copied: a second copy of every token would double the peak (10 bytes a token) */
        st = ft_examples_split_move(&all, r->data.val_fraction, (uint64_t)r->training.seed, &ds->train, &ds->valid);
    }
    ft_examples_free(&all);
    if (st != FT_OK) return st;
    FT_TRY(ft_write_shards(data_dir, tname, fps, &ds->train, ds->threads));
    FT_TRY(ft_write_shards(data_dir, vname, fps, &ds->valid, ds->threads));
    return FT_OK;
}

/* ---- the cache directory ------------------------------------------------------------------ */

/* Every edit of a data file (or of the tokenizer, template, loss masking, ...) gives a new fingerprint,
 * and the old one's shards (540 MB per GB of JSONL) would stay in OUTPUT_DIR/data for good. No run
 * can use them: a resume on changed data is refused anyway (ft_cursor_hash binds the training
 * tokens). So once this run's cache is complete (written, its indexes committed, or reused), the
 * caches of other fingerprints are removed: their indexes, shards and the temporaries of writers no
 * longer running, and nothing else (only names of the forms shard.h writes, under
 * "train-<16 hex digits>" and "valid-<16 hex digits>"). The validation cache is the training
 * one's twin (same fingerprint, written and reused together, useless alone) and goes by the same
 * rule. Another ftune process may be reading or writing another fingerprint's cache at that moment
 * (`ftune data` on an edited recipe while `ftune train` of the same output_dir loads): each holds a
 * shared flock(2) on the directory from before it looks at its cache until it is done with it, and
 * the removal takes the lock exclusive without waiting, so it happens only while no other process
 * is inside that span; else the files stay for a later run (logged). A killed process's lock goes
 * with it. Where the directory cannot be locked (flock unsupported) nothing is removed. Builds
 * before this one take no lock: one of them reading or writing a cache this one removes finds it
 * unusable on its next load and tokenizes again (ft_load_or_tokenize's warning), no worse. */

/* The shared lock on data_dir (a descriptor to close), or -1 where the filesystem has no flock. */
static int ft_cache_lock(const char *data_dir) {
    const int fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    while (flock(fd, LOCK_SH) != 0) {
        if (errno == EINTR) continue;
        ft_debug("data: cannot lock %s (%s); other caches there are left alone", data_dir, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* "train-<16 hex>" / "valid-<16 hex>" (dataset name) of another fingerprint than ours */
static int ft_cache_other(const char *name, const char *ours) {
    if (strncmp(name, "train-", 6) != 0 && strncmp(name, "valid-", 6) != 0) return 0;
    if (strlen(name) != 22 || strcmp(name + 6, ours) == 0) return 0;
    for (int i = 6; i < 22; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return 0;
    return 1;
}

/* Counts (and with `remove`, removes) the files of other fingerprints' caches in data_dir. */
static void ft_cache_scan(const char *data_dir, uint64_t fp, int remove, int64_t *files, int64_t *bytes) {
    char ours[17];
    snprintf(ours, sizeof ours, "%016llx", (unsigned long long)fp);
    DIR *d = opendir(data_dir);
    if (!d) return;
    for (struct dirent *de; (de = readdir(d));) {
        char name[64], path[4400];
        long pid;
        if (!ft_shard_file_parse(de->d_name, name, sizeof name, &pid) || !ft_cache_other(name, ours)) continue;
        /* a live writer's temporary (of a build without the lock): kept, as shard.c keeps its own */
        if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH)) continue;
        snprintf(path, sizeof path, "%s/%s", data_dir, de->d_name);
        struct stat sb;
        if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || (remove && unlink(path) != 0)) continue;
        *files += 1, *bytes += (int64_t)sb.st_size;
    }
    closedir(d);
}

/* Removes the other fingerprints' caches when no other process holds the lock (see above). */
static void ft_cache_tidy(const char *data_dir, uint64_t fp, int lock_fd) {
    /* SH -> EX on the same descriptor, without waiting: EWOULDBLOCK while another process holds SH */
    const int alone = lock_fd >= 0 && flock(lock_fd, LOCK_EX | LOCK_NB) == 0;
    const int busy = !alone && lock_fd >= 0 && errno == EWOULDBLOCK;
    int64_t files = 0, bytes = 0;
    ft_cache_scan(data_dir, fp, alone, &files, &bytes);
    if (files > 0 && alone)
        ft_info("data: removed %lld files (%.1f MiB) of tokenized data of earlier inputs from %s", (long long)files,
                (double)bytes / 1048576.0, data_dir);
    else if (files > 0)
        ft_info("data: left %lld files (%.1f MiB) of tokenized data of earlier inputs in %s: %s", (long long)files,
                (double)bytes / 1048576.0, data_dir,
                busy ? "another ftune process is reading or writing data there; a later run removes them"
                     : "the directory cannot be locked (flock) to make sure no other process is using them");
}

static ft_status ft_load_examples(ft_dataset *ds, const ft_recipe *r, const char *data_dir, uint64_t fp) {
    const int lock_fd = ft_cache_lock(data_dir);
    const ft_status st = ft_load_or_tokenize(ds, r, data_dir, fp);
    if (st == FT_OK) ft_cache_tidy(data_dir, fp, lock_fd);
    if (lock_fd >= 0) close(lock_fd);
    return st;
}

/* ---- open --------------------------------------------------------------------------------- */

/* XXH3 of the examples' token ids and boundaries (not their loss masks: data.loss may change on a
 * resume, with the recipe's warning; the examples themselves may not). */
static uint64_t ft_examples_hash(const ft_examples *ex) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0;
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, &ex->n, sizeof ex->n);
    if (ex->n) XXH3_64bits_update(h, ex->offsets, (size_t)(ex->n + 1) * sizeof *ex->offsets);
    if (ex->n_tokens) XXH3_64bits_update(h, ex->tokens, (size_t)ex->n_tokens * sizeof *ex->tokens);
    const uint64_t v = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return v;
}

/* mkdir -p: `ftune data` may be the first to write in output_dir. */
static ft_status ft_mkdir(const char *path) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return FT_ERR(FT_E_IO, "%s: cannot create directory: %s", p, strerror(errno));
        *c = '/';
    }
    if (mkdir(p, 0777) == 0 || errno == EEXIST) return FT_OK;
    return FT_ERR(FT_E_IO, "%s: cannot create directory: %s", path, strerror(errno));
}

ft_status ft_dataset_open(ft_dataset **out, const ft_recipe *r, const char *output_dir) {
    *out = NULL;
    if (r->data.n_train < 1) return FT_ERR(FT_E_ARG, "data.train: no training files given");
    ft_dataset *ds;
    FT_TRY(ft_calloc((void **)&ds, sizeof *ds, "dataset"));
    ft_examples_init(&ds->train);
    ft_examples_init(&ds->valid);
    ds->B = r->training.micro_batch;
    ds->T = r->data.seq_len;
    ds->eot = -1;
    ds->threads = r->model.threads > 0 ? (int)r->model.threads : omp_get_max_threads();
    ft_status st;
    const char *tok_dir = r->data.tokenizer && r->data.tokenizer[0] ? r->data.tokenizer : r->model.path;
    char data_dir[4096];
    snprintf(data_dir, sizeof data_dir, "%s/data", output_dir);
    FT_CHECK_GOTO(st, ft_mkdir(data_dir), fail);
    FT_CHECK_GOTO(st, ft_model_tokenizer(&ds->tok, tok_dir), fail);
    ft_render_opts_from_tok(&ds->ro, ds->tok);
    FT_CHECK_GOTO(st, ft_loss_mode_parse(r->data.loss, &ds->ro.loss), fail_loss);
    FT_CHECK_GOTO(st, ft_resolve_template(ds, r), fail);
    uint64_t fp = 0;
    FT_CHECK_GOTO(st, ft_fingerprint(r, ds, tok_dir, &fp), fail);
    FT_CHECK_GOTO(st, ft_load_examples(ds, r, data_dir, fp), fail);
    ds->train_hash = ft_examples_hash(&ds->train);
    ds->eos = ft_tok_eos_id(ds->tok);
    ds->eot = ft_chat_turn_end_id(ds->tok, ds->ro.tmpl);

    ft_pack_opts po = {.seq_len = r->data.seq_len};
    po.strategy = strcmp(r->data.packing, "none") == 0         ? FT_PACK_NONE
                  : strcmp(r->data.packing, "sequential") == 0 ? FT_PACK_SEQUENTIAL
                                                               : FT_PACK_BFD;
    po.long_policy = strcmp(r->data.long_examples, "drop") == 0 ? FT_LONG_DROP : FT_LONG_TRUNCATE;
    int32_t pad = ft_tok_pad_id(ds->tok);
    po.pad_id = pad >= 0 ? pad : ds->eos >= 0 ? ds->eos : 0;
    FT_CHECK_GOTO(st, ft_pack_build(&ds->train, &po, &ds->train_plan), fail);
    FT_CHECK_GOTO(st, ft_pack_build(&ds->valid, &po, &ds->valid_plan), fail);
    char line[256];
    ft_pack_stats_str(&ds->train_plan.stats, ds->train_packing, sizeof ds->train_packing);
    ft_info("data: train %s", ds->train_packing); /* the stats start with "N examples -> ..." */
    if (ds->valid_plan.n_rows > 0) {
        ft_pack_stats_str(&ds->valid_plan.stats, line, sizeof line);
        ft_info("data: valid %s", line);
    }
    for (int v = 0; v < 2; v++) { /* truncation that removed every target: a short seq_len, not a data problem */
        const ft_pack_stats *ps = v ? &ds->valid_plan.stats : &ds->train_plan.stats;
        if (ps->dropped_cut > 0)
            ft_warn("data.%s: %lld example%s dropped: %s targets (the answers) begin after the first %lld tokens, "
                    "which is all data.seq_len keeps (the longest is %lld tokens): raise data.seq_len to train on %s",
                    v ? "valid" : "train", (long long)ps->dropped_cut, ps->dropped_cut == 1 ? "" : "s",
                    ps->dropped_cut == 1 ? "its" : "their", (long long)r->data.seq_len, (long long)ps->cut_longest,
                    ps->dropped_cut == 1 ? "it" : "them");
    }
    if (ds->train_plan.n_rows < 1) {
        st = FT_ERR(FT_E_FORMAT, "data.train: nothing left to train on after packing into data.seq_len %lld (%lld "
                                 "examples dropped as too long or without targets)",
                    (long long)r->data.seq_len,
                    (long long)(ds->train_plan.stats.dropped_long + ds->train_plan.stats.dropped_empty));
        goto fail;
    }
    if (r->data.n_valid > 0 && ds->valid_plan.n_rows < 1) {
        st = FT_ERR(FT_E_FORMAT, "data.valid: nothing left to validate on after packing into data.seq_len %lld (%lld "
                                 "examples dropped as too long or without targets)",
                    (long long)r->data.seq_len,
                    (long long)(ds->valid_plan.stats.dropped_long + ds->valid_plan.stats.dropped_empty));
        goto fail;
    }
    ft_batcher_opts bo = {.batch_rows = ds->B, .mode = FT_BATCH_TRAIN, .seed = (uint64_t)r->training.seed};
    FT_CHECK_GOTO(st, ft_batcher_create(&ds->train_b, &ds->train_plan, &ds->train, &bo), fail);
    if (ds->valid_plan.n_rows > 0) {
        bo.mode = FT_BATCH_EVAL;
        FT_CHECK_GOTO(st, ft_batcher_create(&ds->valid_b, &ds->valid_plan, &ds->valid, &bo), fail);
    }
    *out = ds;
    return FT_OK;
fail_loss:
    st = ft_error_wrap(st, "data.loss");
fail:
    ft_dataset_free(ds);
    rmdir(data_dir); /* a failure before any cache was written leaves no empty data/ behind (a cache keeps it) */
    return st;
}

void ft_dataset_free(ft_dataset *ds) {
    if (!ds) return;
    ft_batcher_free(ds->train_b);
    ft_batcher_free(ds->valid_b);
    ft_pack_free(&ds->train_plan);
    ft_pack_free(&ds->valid_plan);
    ft_examples_free(&ds->train);
    ft_examples_free(&ds->valid);
    ft_tok_free(ds->tok);
    ft_free(ds);
}

/* Shard files and their bytes as an index lists them (0 when it cannot be read: a summary only). */
static void ft_index_totals(const char *path, int64_t *files, int64_t *bytes) {
    char *buf = NULL;
    int missing = 0;
    int64_t blen = 0;
    if (ft_read_file(path, 0, &buf, &blen, &missing) != FT_OK || !buf) {
        ft_error_clear();
        return;
    }
    cJSON *idx = NULL;
    if (ft_json_parse(buf, blen, path, &idx) != FT_OK) ft_error_clear(); /* a summary: nothing to report */
    free(buf);
    const cJSON *shards = idx ? cJSON_GetObjectItemCaseSensitive(idx, "shards") : NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, shards) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(e, "bytes");
        *files += 1;
        if (cJSON_IsNumber(b)) *bytes += (int64_t)b->valuedouble;
    }
    cJSON_Delete(idx);
}

void ft_dataset_get_info(const ft_dataset *ds, ft_dataset_info *info) {
    memset(info, 0, sizeof *info);
    info->train_examples = ds->train.n;
    info->valid_examples = ds->valid.n;
    info->train_rows = ds->train_plan.n_rows;
    info->valid_rows = ds->valid_plan.n_rows;
    info->train_targets = ds->train_plan.stats.targets;
    double sq = 0.0, sum = 0.0;
    for (int64_t i = 0; i < ds->train_plan.n_pieces; i++) {
        const double l = (double)ds->train_plan.piece_len[i];
        sq += l * l, sum += l;
    }
    info->train_attn_len = sum > 0 ? sq / sum : 0.0;
    info->skipped_records = ds->skipped;
    info->max_token_id = -1;
    const ft_examples *sets[2] = {&ds->train, &ds->valid};
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < sets[k]->n_tokens; i++)
            if (sets[k]->tokens[i] > info->max_token_id) info->max_token_id = sets[k]->tokens[i];
    info->cached = ds->cached;
    info->format = ft_data_format_name(ds->format);
    info->template_name = ft_chat_template_name(ds->ro.tmpl);
    info->records = ds->records;
    info->first_error = ds->first_error;
    info->train_tokens = ds->train.n_tokens;
    info->valid_tokens = ds->valid.n_tokens;
    info->valid_targets = ds->valid_plan.stats.targets;
    info->train_fill = ds->train_plan.stats.fill;
    info->train_efficiency = ds->train_plan.stats.efficiency;
    info->train_packing = ds->train_packing;
    info->train_index = ds->train_index;
    info->tokenize_seconds = ds->tokenize_seconds;
    info->threads = ds->threads;
    const char *idx[2] = {ds->train_index, ds->valid_index};
    for (int k = 0; k < 2; k++) {
        int64_t files = 0, bytes = 0;
        ft_index_totals(idx[k], &files, &bytes);
        info->shard_files += files, info->shard_bytes += bytes;
    }
}

double ft_dataset_epoch(const ft_dataset *ds) { return ft_batcher_progress(ds->train_b); }

/* ---- batches ------------------------------------------------------------------------------ */

ft_status ft_rows_alloc(const ft_dataset *ds, ft_rows *rows) {
    memset(rows, 0, sizeof *rows);
    const size_t bytes = (size_t)(ds->B * ds->T) * sizeof(int32_t);
    ft_status st = ft_malloc((void **)&rows->tokens, bytes, "batch tokens");
    if (st == FT_OK) st = ft_malloc((void **)&rows->labels, bytes, "batch labels");
    if (st == FT_OK) st = ft_malloc((void **)&rows->pos, bytes, "batch positions");
    if (st == FT_OK) st = ft_malloc((void **)&rows->doc_start, bytes, "batch doc_start");
    if (st != FT_OK) {
        ft_rows_free(rows);
        return st;
    }
    rows->B = ds->B, rows->T = ds->T;
    return FT_OK;
}

void ft_rows_free(ft_rows *rows) {
    ft_free(rows->tokens);
    ft_free(rows->labels);
    ft_free(rows->pos);
    ft_free(rows->doc_start);
    memset(rows, 0, sizeof *rows);
}

static ft_status ft_next_from(ft_batcher *b, ft_rows *rows) {
    ft_row_batch batch = {.B = rows->B, .T = rows->T, .tokens = rows->tokens, .labels = rows->labels,
                      .positions = rows->pos, .doc_start = rows->doc_start};
    FT_TRY(ft_batcher_next(b, &batch));
    rows->n_rows = batch.n_rows, rows->n_targets = batch.n_targets;
    return FT_OK;
}

ft_status ft_dataset_next(ft_dataset *ds, ft_rows *rows) { return ft_next_from(ds->train_b, rows); }

/* The identity a cursor carries (its plan_hash): the packing plan's hash, which is the rows' layout
 * only, bound to the training tokens' hash. A data file or tokenizer edited in place so that every
 * example keeps its length (a typo fixed, a word for a word) packs into the same layout, and a
 * resume would otherwise train the rest of the run on other data than the checkpoint's, silently. */
static uint64_t ft_cursor_hash(const ft_dataset *ds, uint64_t plan_hash) {
    return XXH3_64bits_withSeed(&ds->train_hash, sizeof ds->train_hash, plan_hash);
}

void ft_dataset_get_cursor(const ft_dataset *ds, ft_data_cursor *c) {
    ft_batcher_state s;
    ft_batcher_get_state(ds->train_b, &s);
    c->seed = s.seed, c->epoch = s.epoch, c->index = s.index, c->rows = s.rows;
    c->plan_hash = ft_cursor_hash(ds, s.plan_hash);
}

ft_status ft_dataset_set_cursor(ft_dataset *ds, const ft_data_cursor *c) {
    ft_batcher_state now;
    ft_batcher_get_state(ds->train_b, &now);
    const uint64_t ours = ft_cursor_hash(ds, now.plan_hash);
    /* a checkpoint of an earlier build holds the layout's hash alone: its tokens cannot be checked */
    if (c->plan_hash != ours && c->plan_hash != now.plan_hash)
        return FT_ERR(FT_E_ARG,
                      "cannot resume the data cursor: it was saved for %lld packed rows (data %016llx), the training "
                      "data now packs into %lld rows (data %016llx); the data files, the tokenizer or the packing "
                      "options changed",
                      (long long)c->rows, (unsigned long long)c->plan_hash, (long long)now.rows,
                      (unsigned long long)ours);
    ft_batcher_state s = {.seed = c->seed, .epoch = c->epoch, .index = c->index, .rows = c->rows,
                          .plan_hash = now.plan_hash};
    return ft_batcher_set_state(ds->train_b, &s);
}

ft_status ft_dataset_eval_begin(ft_dataset *ds) {
    if (!ds->valid_b) return FT_OK;
    ft_batcher_state s;
    ft_batcher_get_state(ds->valid_b, &s);
    s.epoch = 0, s.index = 0;
    return ft_batcher_set_state(ds->valid_b, &s);
}

ft_status ft_dataset_eval_next(ft_dataset *ds, ft_rows *rows) {
    if (!ds->valid_b) {
        rows->n_rows = rows->n_targets = 0;
        return FT_OK;
    }
    return ft_next_from(ds->valid_b, rows);
}

/* ---- prompts ------------------------------------------------------------------------------ */

ft_status ft_dataset_prompt_ids(const ft_dataset *ds, const char *prompt, int32_t **ids, int64_t *n) {
    *ids = NULL, *n = 0;
    if (ds->format != FT_FMT_ALPACA || ds->ro.tmpl != FT_TMPL_NONE) { /* raw text runs untemplated */
        ft_render_opts o = ds->ro;
        if (ds->format == FT_FMT_TEXT) o.tmpl = FT_TMPL_NONE;
        return ft_chat_prompt_ids(ds->tok, &o, prompt, ids, n);
    }
    /* alpaca without a template: the Stanford prompt, as its records are rendered */
    ft_rendered rd = {0};
    ft_tok_ids v = {0};
    ft_status st = FT_OK;
    const int32_t bos = ft_tok_bos_id(ds->tok);
    if (bos >= 0 && ft_tok_adds_bos(ds->tok)) st = ft_tok_ids_push(&v, bos);
    if (st == FT_OK) st = ft_alpaca_prompt(prompt, "", &rd);
    if (st == FT_OK) st = ft_tok_encode_append(ds->tok, rd.text, rd.len, 0, &v);
    ft_rendered_free(&rd);
    if (st != FT_OK) {
        ft_tok_ids_free(&v);
        return st;
    }
    *ids = v.ids, *n = v.n;
    return FT_OK;
}

ft_status ft_dataset_decode(const ft_dataset *ds, const int32_t *ids, int64_t n, char **text) {
    return ft_tok_decode(ds->tok, ids, n, 1, text, NULL);
}

int ft_dataset_is_stop(const ft_dataset *ds, int32_t id) { return id >= 0 && (id == ds->eos || id == ds->eot); }
