/* dataset_tokenize.c: see dataset_tokenize.h.
 *
 * The result must not depend on the thread count, down to the order and text of every log line and
 * error, so each file is read by two readers:
 *   - a quiet look-ahead reader (skip policy, logs nothing) reads a chunk of FT_CHUNK_PER_THREAD
 *     records per thread (or FT_CHUNK_BYTES of rendered text) and renders each into a slot (a
 *     record is valid only until the next read);
 *   - the chunk's slots are encoded by a pool of threads (the tokenizer is thread-safe), each slot
 *     keeping its own status and message;
 *   - the reporting reader, with the recipe's policy, reads the same records again in order, and
 *     each is checked, rejected (with its slot's render or encode failure) or appended exactly where
 *     the one-record-at-a-time loop did it: malformed lines are logged, counted or fatal at the same
 *     point, FILE:LINE and the first error are the same, and the file's summary comes last.
 * Both readers parse the same bytes, so the n-th record of one is the n-th of the other (checked by
 * line); parsing twice costs a few percent. The two serial parts overlap the encoding and each
 * other: while the pool encodes chunk k, the calling thread reports and appends chunk k-1 and one
 * pool thread reads and renders chunk k+1 (three chunks of slots in flight); then the caller helps
 * encode what is left of chunk k. With one thread the caller does all three in turn.
 *
 * The pool is plain pthreads with condition variables rather than OpenMP: its threads sleep while
 * the caller does the serial work instead of spinning, which matters when the machine is shared.
 * Chunks are small so that a record stays in cache from rendering to appending. */
#include "trainer/dataset_tokenize.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/log.h"
#include "kernels/mem.h"

#define FT_CHUNK_RECORDS 1024                  /* at most; 64 per thread (small chunks stay in cache) */
#define FT_CHUNK_PER_THREAD 64
#define FT_CHUNK_BYTES ((int64_t)16 << 20)
#define FT_TASK_RECORDS 8                      /* records a thread takes at a time */
#define FT_SLOT_KEEP_BYTES ((int64_t)16 << 10) /* larger slot buffers are freed once reported */
#define FT_MAX_THREADS 256

typedef struct ft_slot {
    int64_t line;      /* of the record (the reporting reader must meet the same one) */
    ft_rendered rd;
    ft_encoded enc;
    ft_status st;      /* render or encode failure */
    char *msg;         /* its message (malloc'd) */
} ft_slot;

typedef struct ft_chunk {
    ft_slot slots[FT_CHUNK_RECORDS];
    int64_t n;
    int end;              /* the look-ahead reader is done after these records */
    ft_status ahead_st;   /* ... because of this failure (FT_OK: end of file) */
    char *ahead_msg;
} ft_chunk;

/* ---- slots -------------------------------------------------------------------------------- */

static void ft_slot_fail(ft_slot *s, ft_status st) {
    s->st = st;
    s->msg = strdup(ft_error_msg());
    ft_error_clear();
}

/* Encodes slots [a, b) of a chunk (any thread). */
static void ft_chunk_encode(const ft_tok *tok, ft_chunk *c, int64_t a, int64_t b) {
    for (int64_t i = a; i < b; i++) {
        ft_slot *sl = &c->slots[i];
        if (sl->st != FT_OK) continue;
        ft_status st = ft_rendered_encode(tok, &sl->rd, &sl->enc);
        if (st != FT_OK) ft_slot_fail(sl, st);
    }
}

static void ft_chunk_free(ft_chunk *c) {
    if (!c) return;
    for (int64_t i = 0; i < FT_CHUNK_RECORDS; i++) {
        ft_rendered_free(&c->slots[i].rd);
        ft_encoded_free(&c->slots[i].enc);
        free(c->slots[i].msg);
    }
    free(c->ahead_msg);
    ft_free(c);
}

/* ---- the encoding pool -------------------------------------------------------------------- */

typedef struct ft_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;    /* a chunk to encode, the side job, or stop */
    pthread_cond_t idle;    /* the chunk is encoded / the side job is done */
    const ft_tok *tok;
    ft_chunk *chunk;        /* being encoded; NULL when none */
    int64_t next, done;     /* next slot handed out; slots encoded */
    void (*job)(void *);    /* the side job of this chunk (reading the next one), run by one thread */
    void *job_arg;
    int job_state;          /* 0 none or done, 1 waiting, 2 running */
    int stop;
    pthread_t th[FT_MAX_THREADS];
    int n_th;
} ft_pool;

/* Under the lock: hands out the next slots of the chunk ([*a, return value); empty at the end). */
static int64_t ft_pool_take(ft_pool *p, int64_t *a) {
    *a = p->next;
    int64_t b = p->next + FT_TASK_RECORDS;
    if (b > p->chunk->n) b = p->chunk->n;
    p->next = b;
    return b;
}

/* Under the lock (released while it runs): the side job. */
static void ft_pool_run_job(ft_pool *p) {
    p->job_state = 2;
    pthread_mutex_unlock(&p->mu);
    p->job(p->job_arg);
    pthread_mutex_lock(&p->mu);
    p->job_state = 0;
    pthread_cond_signal(&p->idle);
}

/* Under the lock (released while encoding): encodes slots [a, b) and counts them. */
static void ft_pool_run(ft_pool *p, int64_t a, int64_t b) {
    ft_chunk *c = p->chunk;
    pthread_mutex_unlock(&p->mu);
    ft_chunk_encode(p->tok, c, a, b);
    pthread_mutex_lock(&p->mu);
    p->done += b - a;
    if (p->done == c->n) pthread_cond_signal(&p->idle);
}

static void *ft_pool_worker(void *arg) {
    ft_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->job_state != 1 && (!p->chunk || p->next >= p->chunk->n))
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop) break;
        if (p->job_state == 1) {
            ft_pool_run_job(p);
            continue;
        }
        int64_t a, b = ft_pool_take(p, &a);
        ft_pool_run(p, a, b);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts threads - 1 workers (fewer if the system refuses some: the result is the same). */
static ft_status ft_pool_open(ft_pool *p, const ft_tok *tok, int threads) {
    memset(p, 0, sizeof *p);
    p->tok = tok;
    if (pthread_mutex_init(&p->mu, NULL) != 0) return FT_ERR(FT_E_INTERNAL, "cannot create a mutex");
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (threads > FT_MAX_THREADS) threads = FT_MAX_THREADS;
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&p->th[p->n_th], NULL, ft_pool_worker, p) != 0) {
            ft_warn("data: could only start %d of %d encoding threads", p->n_th + 1, threads);
            break;
        }
        p->n_th++;
    }
    return FT_OK;
}

static void ft_pool_close(ft_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_th; i++) pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->mu);
}

/* The workers start on chunk c and, first, on the side job when there is one (job may be NULL). */
static void ft_pool_start(ft_pool *p, ft_chunk *c, void (*job)(void *), void *job_arg) {
    pthread_mutex_lock(&p->mu);
    p->chunk = c;
    p->next = p->done = 0;
    p->job = job, p->job_arg = job_arg;
    p->job_state = job ? 1 : 0;
    if (c->n > 0 || job) pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
}

/* The caller encodes what is left of the chunk and runs the side job if no worker took it, then
 * waits for the workers' part. */
static void ft_pool_finish(ft_pool *p) {
    pthread_mutex_lock(&p->mu);
    while (p->next < p->chunk->n) {
        int64_t a, b = ft_pool_take(p, &a);
        ft_pool_run(p, a, b);
    }
    if (p->job_state == 1) ft_pool_run_job(p);
    while (p->done < p->chunk->n || p->job_state != 0) pthread_cond_wait(&p->idle, &p->mu);
    p->chunk = NULL;
    p->job = NULL;
    pthread_mutex_unlock(&p->mu);
}

/* ---- one file ----------------------------------------------------------------------------- */

typedef struct ft_reading {
    ft_tokenize_job *job;
    const char *path;
    ft_jsonl *jl, *ahead;    /* reporting and look-ahead readers */
    ft_examples *ex;
    int64_t chunk_records;   /* records per chunk */
} ft_reading;

/* Look-ahead: reads and renders the next chunk (one thread at a time: the side job). */
static void ft_chunk_fill(ft_reading *rd, ft_chunk *c) {
    c->n = 0;
    c->end = 0;
    c->ahead_st = FT_OK;
    int64_t bytes = 0;
    while (c->n < rd->chunk_records && bytes < FT_CHUNK_BYTES) {
        const ft_record *rec;
        ft_status st = ft_jsonl_next(rd->ahead, &rec);
        if (st != FT_OK) { /* the reporting reader meets it too, after these records */
            c->ahead_st = st;
            c->ahead_msg = strdup(ft_error_msg());
            ft_error_clear();
        }
        if (st != FT_OK || !rec) {
            c->end = 1;
            return;
        }
        ft_slot *sl = &c->slots[c->n++];
        sl->line = rec->line;
        sl->st = FT_OK;
        sl->enc.n = 0;
        st = ft_render_record(rec, rd->job->ro, &sl->rd);
        if (st != FT_OK) ft_slot_fail(sl, st);
        bytes += sl->rd.len;
    }
}

/* Reporting: the chunk's records through the policy, in order, into the examples (the calling
 * thread only); then the chunk's slots are made ready for reuse. */
static ft_status ft_chunk_report(ft_reading *rd, ft_chunk *c) {
    ft_tokenize_job *job = rd->job;
    ft_status st = FT_OK;
    for (int64_t i = 0; i < c->n && st == FT_OK; i++) {
        ft_slot *sl = &c->slots[i];
        const ft_record *rec;
        st = ft_jsonl_next(rd->jl, &rec);
        if (st != FT_OK) break;
        if (!rec || rec->line != sl->line) {
            st = FT_ERR(FT_E_IO, "%s: the file changed while it was read (a record at line %lld expected)", rd->path,
                        (long long)sl->line);
            break;
        }
        if (job->format == FT_FMT_AUTO) job->format = rec->format;
        if (rec->format == FT_FMT_CHAT && job->ro->tmpl == FT_TMPL_NONE) {
            st = FT_ERR(FT_E_ARG,
                        "%s:%lld: chat records need a chat template, and the tokenizer at %s has none ftune "
                        "knows: set data.template (%s)",
                        rec->source, (long long)rec->line, ft_tok_path(job->tok), ft_chat_template_list());
            break;
        }
        if (sl->st != FT_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", sl->msg ? sl->msg : "out of memory");
            st = ft_jsonl_reject(rd->jl, "%s", msg);
            continue;
        }
        st = ft_examples_add(rd->ex, sl->enc.ids, sl->enc.mask, sl->enc.n);
    }
    for (int64_t i = 0; i < c->n; i++) {
        ft_slot *sl = &c->slots[i];
        free(sl->msg);
        sl->msg = NULL;
        if (sl->rd.cap > FT_SLOT_KEEP_BYTES) ft_rendered_free(&sl->rd);
        if (sl->enc.cap > FT_SLOT_KEEP_BYTES / 4) ft_encoded_free(&sl->enc);
    }
    c->n = 0;
    if (st != FT_OK || !c->end) return st;
    /* the look-ahead reader stopped after this chunk: at the end of the file, or at a failure the
     * reporting reader must meet at the same place */
    const ft_record *rec = NULL;
    st = ft_jsonl_next(rd->jl, &rec); /* the end of the file and the skipped-record summary */
    if (st == FT_OK && c->ahead_st != FT_OK) st = FT_ERR(c->ahead_st, "%s", c->ahead_msg ? c->ahead_msg : rd->path);
    else if (st == FT_OK && rec)
        st = FT_ERR(FT_E_IO, "%s: the file changed while it was read (a record at line %lld)", rd->path,
                    (long long)rec->line);
    return st;
}

typedef struct ft_fill_job {
    ft_reading *rd;
    ft_chunk *c;
} ft_fill_job;

static void ft_fill_job_run(void *arg) {
    ft_fill_job *j = arg;
    ft_chunk_fill(j->rd, j->c);
}

/* One file: while the pool encodes chunk k and reads chunk k+1, this thread reports chunk k-1. */
static ft_status ft_tokenize_file(ft_tokenize_job *job, ft_pool *pool, const char *path, ft_chunk *const bufs[3],
                                  ft_examples *ex) {
    ft_reading rd = {.job = job, .path = path, .ex = ex, .chunk_records = (int64_t)FT_CHUNK_PER_THREAD * job->threads};
    if (rd.chunk_records > FT_CHUNK_RECORDS) rd.chunk_records = FT_CHUNK_RECORDS;
    ft_jsonl_opts jo = job->jo, ao = job->jo;
    jo.quiet = 0;
    ao.fatal = 0, ao.quiet = 1;
    ft_status st;
    const int64_t n0 = ex->n;
    FT_CHECK_GOTO(st, ft_jsonl_open(&rd.jl, path, &jo), done);
    FT_CHECK_GOTO(st, ft_jsonl_open(&rd.ahead, path, &ao), done);
    ft_chunk *prev = NULL, *cur = bufs[0], *next = bufs[1], *spare = bufs[2];
    ft_chunk_fill(&rd, cur);
    for (;;) {
        ft_fill_job fill = {.rd = &rd, .c = next};
        ft_pool_start(pool, cur, cur->end ? NULL : ft_fill_job_run, &fill);
        ft_status rs = prev ? ft_chunk_report(&rd, prev) : FT_OK;
        ft_pool_finish(pool);
        FT_CHECK_GOTO(st, rs, done);
        if (cur->end) {
            FT_CHECK_GOTO(st, ft_chunk_report(&rd, cur), done);
            break;
        }
        ft_chunk *reported = prev ? prev : spare;
        prev = cur, cur = next, next = reported;
    }
    ft_jsonl_stats js;
    ft_jsonl_get_stats(rd.jl, &js);
    job->skipped += js.skipped;
    job->records += js.records + js.skipped;
    if (js.skipped && !job->first_error[0]) snprintf(job->first_error, sizeof job->first_error, "%s", js.first_error);
    if (js.skipped)
        ft_info("data: %s: %lld examples (%lld records skipped, see above)", path, (long long)(ex->n - n0),
                (long long)js.skipped);
    else
        ft_info("data: %s: %lld examples", path, (long long)(ex->n - n0));
    st = FT_OK;
done:
    for (int k = 0; k < 3; k++) { /* ready for the next file */
        for (int64_t i = 0; i < bufs[k]->n; i++) {
            free(bufs[k]->slots[i].msg);
            bufs[k]->slots[i].msg = NULL;
        }
        bufs[k]->n = 0;
        free(bufs[k]->ahead_msg);
        bufs[k]->ahead_msg = NULL;
    }
    ft_jsonl_close(rd.ahead);
    ft_jsonl_close(rd.jl);
    return st;
}

static double ft_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ft_status ft_tokenize_files(ft_tokenize_job *job, char *const *files, int n_files, ft_examples *ex) {
    if (job->threads < 1) job->threads = 1;
    if (job->threads > FT_MAX_THREADS) job->threads = FT_MAX_THREADS;
    ft_chunk *bufs[3] = {NULL, NULL, NULL};
    ft_status st = FT_OK;
    for (int k = 0; k < 3 && st == FT_OK; k++) st = ft_calloc((void **)&bufs[k], sizeof *bufs[k], "tokenization chunk");
    ft_pool pool;
    int pool_open = 0;
    if (st == FT_OK) st = ft_pool_open(&pool, job->tok, job->threads);
    pool_open = st == FT_OK;
    const double t0 = ft_now();
    const int64_t tok0 = ex->n_tokens, rec0 = job->records;
    for (int i = 0; i < n_files && st == FT_OK; i++) st = ft_tokenize_file(job, &pool, files[i], bufs, ex);
    if (pool_open) ft_pool_close(&pool);
    for (int k = 0; k < 3; k++) ft_chunk_free(bufs[k]);
    const double dt = ft_now() - t0, div = dt > 0 ? dt : 1e-9;
    job->seconds += dt;
    if (st == FT_OK)
        ft_info("data: tokenized %lld records into %lld tokens in %.2f s (%.0f records/s, %.0f tokens/s, %d threads)",
                (long long)(job->records - rec0), (long long)(ex->n_tokens - tok0), dt,
                (double)(job->records - rec0) / div, (double)(ex->n_tokens - tok0) / div, job->threads);
    return st;
}
