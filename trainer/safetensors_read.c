/* safetensors_read.c: validating, memory-mapped safetensors reader (single file or sharded index).
 * See safetensors_read.h for the contract. Validation follows huggingface/safetensors
 * (tensor.rs: read_metadata + Metadata::validate; checked against safetensors 0.8.0): what it
 * rejects we reject, each with one message naming the file; what it accepts we accept, except
 * tensors of more than FT_ST_MAX_DIMS dimensions (FT_E_UNSUPPORTED). Names in messages are cut
 * at 200 bytes so that garbage cannot flood the log. */
#include "trainer/safetensors_read.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/fileio.h"
#include "kernels/json.h"
#include "kernels/log.h"
#include "kernels/mem.h"

enum { FT_ST_HEADER_MAX = 100000000 }; /* the reference reader's limit (MAX_HEADER_SIZE) */
#define FT_ST_JSON_INT_MAX 9007199254740992.0 /* 2^53: largest integer a JSON double holds exactly */

typedef struct ft_st_shard {
    char *path;
    int fd;
    uint8_t *map;       /* whole file, PROT_READ, MAP_PRIVATE */
    int64_t size;       /* file bytes */
    int64_t data_start; /* 8 + header length */
} ft_st_shard;

typedef struct ft_st_meta {
    char *key, *value;
} ft_st_meta;

struct ft_st_model {
    char *path;
    ft_st_shard *shards; /* [n_shards], name order */
    int32_t n_shards;
    ft_st_tensor *t;     /* [n], file order; names owned here */
    int64_t n, cap;
    int64_t *by_name;    /* [n] indices into t sorted by name */
    ft_st_meta *meta;    /* [n_meta] */
    int64_t n_meta, meta_cap;
    int64_t total_bytes;
    int64_t page;
};

/* A tensor being validated: the public record plus its offsets relative to the data buffer. */
typedef struct ft_st_pending {
    ft_st_tensor t;
    int64_t begin, end;
    int64_t order; /* position in the header: the tie-break among zero-size tensors */
} ft_st_pending;

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as Rust's from_utf8. */
static int64_t ft_st_utf8_error(const uint8_t *s, int64_t n) {
    int64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return i;
        if (n - i < len) return i;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += len;
    }
    return -1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int ft_st_json_uint(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > FT_ST_JSON_INT_MAX || d != floor(d)) return 0;
    *out = (int64_t)d;
    return 1;
}

/* Parses one header entry into p (the name already set). */
static ft_status ft_st_parse_entry(const char *path, const cJSON *e, int64_t data_len, ft_st_pending *p) {
    const char *nm = p->t.name;
    if (!cJSON_IsObject(e)) return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": entry is not a JSON object", path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": missing \"dtype\"", path, nm);
    if (!sh) return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": missing \"shape\"", path, nm);
    if (!of) return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": missing \"data_offsets\"", path, nm);
    if (!cJSON_IsString(dt)) return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": \"dtype\" is not a string", path, nm);
    if (!ft_st_dtype_from_name(dt->valuestring, &p->t.st_dtype))
        return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": unknown dtype \"%.40s\"", path, nm, dt->valuestring);
    if (!ft_st_dtype_to_ft(p->t.st_dtype, &p->t.dtype)) p->t.dtype = FT_DTYPE_COUNT;
    if (!cJSON_IsArray(sh)) return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": \"shape\" is not an array", path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > FT_ST_MAX_DIMS)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor \"%.200s\": %d dimensions (at most %d supported)", path, nm, nd,
                      (int)FT_ST_MAX_DIMS);
    p->t.ndim = nd;
    int d = 0;
    for (const cJSON *v = sh->child; v; v = v->next, d++) {
        if (cJSON_IsNumber(v) && v->valuedouble < 0)
            return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": shape[%d] = %g is negative", path, nm, d, v->valuedouble);
        if (!ft_st_json_uint(v, &p->t.shape[d]))
            return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": shape[%d] is not a non-negative integer", path, nm, d);
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !ft_st_json_uint(of->child, &p->begin) ||
        !ft_st_json_uint(of->child->next, &p->end))
        return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": \"data_offsets\" is not a pair of non-negative integers",
                      path, nm);
    if (p->end < p->begin)
        return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": data_offsets [%lld, %lld] end before they begin", path, nm,
                      (long long)p->begin, (long long)p->end);
    if (p->end > data_len)
        return FT_ERR(FT_E_FORMAT,
                      "%s: tensor \"%.200s\": data_offsets [%lld, %lld] run past the end of the data (%lld bytes; "
                      "file truncated?)",
                      path, nm, (long long)p->begin, (long long)p->end, (long long)data_len);
    if (ft_st_dtype_nbytes(p->t.st_dtype, nd, p->t.shape, &p->t.numel, &p->t.nbytes) != FT_OK)
        return ft_error_wrap(FT_E_FORMAT, "%s: tensor \"%.200s\"", path, nm);
    if (p->end - p->begin != p->t.nbytes) {
        char s[160];
        return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\": data_offsets [%lld, %lld] span %lld bytes but %s %s needs %lld",
                      path, nm, (long long)p->begin, (long long)p->end, (long long)(p->end - p->begin),
                      ft_st_dtype_name(p->t.st_dtype), ft_st_shape_str(s, sizeof s, nd, p->t.shape),
                      (long long)p->t.nbytes);
    }
    return FT_OK;
}

static int ft_st_cmp_offsets(const void *a, const void *b) {
    const ft_st_pending *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static ft_status ft_st_add_meta(ft_st_model *m, const char *path, const cJSON *md) {
    if (cJSON_IsNull(md)) return FT_OK;
    if (!cJSON_IsObject(md)) return FT_ERR(FT_E_FORMAT, "%s: \"__metadata__\" is not a JSON object", path);
    for (const cJSON *v = md->child; v; v = v->next) {
        if (!cJSON_IsString(v))
            return FT_ERR(FT_E_FORMAT, "%s: \"__metadata__\" value of \"%.200s\" is not a string", path, v->string);
        FT_TRY(ft_grow((void **)&m->meta, &m->meta_cap, m->n_meta + 1, sizeof *m->meta, "safetensors metadata"));
        ft_st_meta *e = &m->meta[m->n_meta];
        FT_TRY(ft_strdup(&e->key, v->string, "safetensors metadata"));
        ft_status st = ft_strdup(&e->value, v->valuestring, "safetensors metadata");
        if (st != FT_OK) {
            ft_free(e->key);
            return st;
        }
        m->n_meta++;
    }
    return FT_OK;
}

/* Validates a parsed header and appends its tensors (in offset order) to m. */
static ft_status ft_st_take_header(ft_st_model *m, int32_t si, const cJSON *root) {
    ft_st_shard *sh = &m->shards[si];
    const int64_t data_len = sh->size - sh->data_start;
    int64_t n = 0, cap = cJSON_GetArraySize(root);
    ft_st_pending *p = NULL;
    ft_status st;
    FT_TRY(ft_calloc((void **)&p, (size_t)(cap ? cap : 1) * sizeof *p, "safetensors header"));
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            FT_CHECK_GOTO(st, ft_st_add_meta(m, sh->path, e), fail);
            continue;
        }
        ft_st_pending *q = &p[n];
        q->t.name = e->string; /* borrowed until copied below */
        q->order = n;
        FT_CHECK_GOTO(st, ft_st_parse_entry(sh->path, e, data_len, q), fail);
        q->t.shard = sh->path;
        q->t.shard_index = si;
        q->t.file_offset = sh->data_start + q->begin;
        q->t.data = sh->map + q->t.file_offset;
        n++;
    }
    /* The offsets, sorted, must tile [0, data_len) exactly (the reference reader's rule). */
    qsort(p, (size_t)n, sizeof *p, ft_st_cmp_offsets);
    int64_t prev = 0;
    for (int64_t i = 0; i < n; i++) {
        if (p[i].begin < prev) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensors \"%.200s\" [%lld, %lld) and \"%.200s\" [%lld, %lld) overlap", sh->path,
                        p[i - 1].t.name, (long long)p[i - 1].begin, (long long)p[i - 1].end, p[i].t.name,
                        (long long)p[i].begin, (long long)p[i].end);
            goto fail;
        }
        if (p[i].begin > prev) {
            st = FT_ERR(FT_E_FORMAT, "%s: %lld unused bytes before tensor \"%.200s\" at data offset %lld (data_offsets "
                        "must tile the data buffer)", sh->path, (long long)(p[i].begin - prev), p[i].t.name,
                        (long long)p[i].begin);
            goto fail;
        }
        prev = p[i].end;
    }
    if (prev != data_len) {
        st = FT_ERR(FT_E_FORMAT, "%s: %lld bytes after the last tensor (data is %lld bytes; data_offsets must cover it "
                    "exactly)", sh->path, (long long)(data_len - prev), (long long)data_len);
        goto fail;
    }
    FT_CHECK_GOTO(st, ft_grow((void **)&m->t, &m->cap, m->n + n, sizeof *m->t, "safetensors tensor list"), fail);
    for (int64_t i = 0; i < n; i++) {
        char *name;
        FT_CHECK_GOTO(st, ft_strdup(&name, p[i].t.name, "safetensors tensor name"), fail);
        m->t[m->n] = p[i].t;
        m->t[m->n].name = name;
        m->total_bytes += p[i].t.nbytes;
        m->n++;
    }
    ft_free(p);
    return FT_OK;
fail:
    ft_free(p);
    return st;
}

/* Maps, checks and parses shard si (path already set). */
static ft_status ft_st_load_shard(ft_st_model *m, int32_t si) {
    ft_st_shard *sh = &m->shards[si];
    const char *path = sh->path;
    sh->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (sh->fd < 0) return FT_ERR(FT_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(sh->fd, &sb) != 0) return FT_ERR(FT_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return FT_ERR(FT_E_IO, "%s: not a regular file", path);
    sh->size = (int64_t)sb.st_size;
    if (sh->size < 8)
        return FT_ERR(FT_E_FORMAT, "%s: file is %lld bytes, too short for the 8-byte safetensors header length "
                      "(empty or truncated)", path, (long long)sh->size);
    void *map = mmap(NULL, (size_t)sh->size, PROT_READ, MAP_PRIVATE, sh->fd, 0);
    if (map == MAP_FAILED) return FT_ERR(FT_E_IO, "%s: mmap failed: %s", path, strerror(errno));
    sh->map = map;
    (void)madvise(map, (size_t)sh->size, MADV_SEQUENTIAL); /* a hint: failure changes nothing */
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)sh->map[b] << (8 * b);
    if (hlen > FT_ST_HEADER_MAX)
        return FT_ERR(FT_E_FORMAT, "%s: header length %llu exceeds the %d-byte limit (not a safetensors file?)", path,
                      (unsigned long long)hlen, FT_ST_HEADER_MAX);
    if ((int64_t)hlen > sh->size - 8)
        return FT_ERR(FT_E_FORMAT, "%s: header length %llu runs past the end of the file (%lld bytes; truncated?)",
                      path, (unsigned long long)hlen, (long long)sh->size);
    sh->data_start = 8 + (int64_t)hlen;
    const char *hdr = (const char *)sh->map + 8;
    int64_t bad = ft_st_utf8_error((const uint8_t *)hdr, (int64_t)hlen);
    if (bad >= 0) return FT_ERR(FT_E_FORMAT, "%s: header is not valid UTF-8 (byte %lld)", path, (long long)bad);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        long long at = end && end >= hdr && end <= hdr + hlen ? (long long)(end - hdr) : -1;
        return FT_ERR(FT_E_FORMAT, "%s: header is not valid JSON (error near header byte %lld)", path, at);
    }
    ft_status st = FT_OK;
    if (!cJSON_IsObject(root)) {
        st = FT_ERR(FT_E_FORMAT, "%s: header is not a JSON object", path);
    } else { /* JSON whitespace around the object is accepted, as the reference reader does */
        for (const char *c = end; c < hdr + hlen; c++) {
            if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r') {
                st = FT_ERR(FT_E_FORMAT, "%s: unexpected bytes after the header JSON (header byte %lld)", path,
                            (long long)(c - hdr));
                break;
            }
        }
    }
    /* A key repeated inside an entry (or "__metadata__" twice) is rejected, as the reference reader rejects
     * a duplicate field; cJSON would read the first occurrence. A repeated tensor name is reported by
     * ft_st_index_names. */
    for (const cJSON *e = st == FT_OK ? root->child : NULL; e && st == FT_OK; e = e->next) {
        const cJSON *d = ft_json_dup_key(e);
        if (d) st = FT_ERR(FT_E_FORMAT, "%s: key \"%.200s\" appears twice in header entry \"%.200s\"", path, d->string,
                           e->string);
        else if (e != root->child && !strcmp(e->string, "__metadata__"))
            for (const cJSON *f = root->child; f != e && st == FT_OK; f = f->next)
                if (!strcmp(f->string, "__metadata__")) st = FT_ERR(FT_E_FORMAT, "%s: \"__metadata__\" appears twice in the header", path);
    }
    if (st == FT_OK) st = ft_st_take_header(m, si, root);
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */

static int ft_st_cmp_idx_name(const void *a, const void *b, void *ctx) {
    const ft_st_tensor *t = ctx;
    return strcmp(t[*(const int64_t *)a].name, t[*(const int64_t *)b].name);
}

/* Builds the name index and rejects duplicates (within a file: repeated JSON key; across shards). */
static ft_status ft_st_index_names(ft_st_model *m) {
    FT_TRY(ft_malloc((void **)&m->by_name, (size_t)(m->n ? m->n : 1) * sizeof *m->by_name, "safetensors name index"));
    for (int64_t i = 0; i < m->n; i++) m->by_name[i] = i;
    qsort_r(m->by_name, (size_t)m->n, sizeof *m->by_name, ft_st_cmp_idx_name, m->t);
    for (int64_t i = 1; i < m->n; i++) {
        const ft_st_tensor *a = &m->t[m->by_name[i - 1]], *b = &m->t[m->by_name[i]];
        if (strcmp(a->name, b->name) != 0) continue;
        if (a->shard_index == b->shard_index)
            return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\" appears twice in the header", a->shard, a->name);
        return FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\" appears in two shards: %s and %s", m->path, a->name,
                      a->shard, b->shard);
    }
    return FT_OK;
}

static const ft_st_tensor *ft_st_lookup_exact(const ft_st_model *m, const char *name) {
    int64_t lo = 0, hi = m->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->t[m->by_name[mid]].name, name);
        if (c == 0) return &m->t[m->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *ft_st_text_name(const char *name, char *buf, size_t cap) {
    const char *rest = NULL;
    if (strncmp(name, "language_model.", 15) == 0) rest = name + 15; /* ".model.X", "lm_head.weight" */
    else if (strncmp(name, "model.language_model.", 21) == 0) rest = name + 21; /* "X" under model. */
    if (!rest) return name;
    int n = rest == name + 15 ? snprintf(buf, cap, "%s", rest) : snprintf(buf, cap, "model.%s", rest);
    return n >= 0 && (size_t)n < cap ? buf : name;
}

const ft_st_tensor *ft_st_lookup(const ft_st_model *m, const char *name) {
    const ft_st_tensor *t = ft_st_lookup_exact(m, name);
    if (t || (strncmp(name, "model.", 6) != 0 && strncmp(name, "lm_head.", 8) != 0)) return t;
    /* the text model of a vision-language checkpoint (hf_config.h, vlm): "language_model.model.X"
     * and "language_model.lm_head.weight" as the hub's Mistral Small 3.1/3.2 files hold them (and
     * transformers 5 writes them), or "model.language_model.X" as transformers 4.52-4.57 wrote them.
     * A text-only checkpoint has neither prefix, so its lookups are unchanged. */
    char alt[1024];
    if (snprintf(alt, sizeof alt, "language_model.%s", name) < (int)sizeof alt && (t = ft_st_lookup_exact(m, alt)))
        return t;
    if (name[0] == 'm' && snprintf(alt, sizeof alt, "model.language_model.%s", name + 6) < (int)sizeof alt)
        t = ft_st_lookup_exact(m, alt);
    return t;
}

static int ft_st_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static ft_status ft_st_alloc_shards(ft_st_model *m, int32_t n) {
    FT_TRY(ft_calloc((void **)&m->shards, (size_t)n * sizeof *m->shards, "safetensors shards"));
    for (int32_t i = 0; i < n; i++) m->shards[i].fd = -1;
    m->n_shards = n;
    return FT_OK;
}

typedef struct ft_st_wm {
    const char *tensor, *shard;
} ft_st_wm;

static int ft_st_cmp_wm(const void *a, const void *b) {
    return strcmp(((const ft_st_wm *)a)->tensor, ((const ft_st_wm *)b)->tensor);
}

static ft_status ft_st_open_index(ft_st_model *m, const char *ipath) {
    char *text = NULL, **names = NULL;
    int64_t len = 0, nw = 0;
    ft_st_wm *wm = NULL;
    cJSON *root = NULL;
    ft_status st;
    FT_CHECK_GOTO(st, ft_read_file(ipath, FT_ST_HEADER_MAX, &text, &len, NULL), out);
    FT_CHECK_GOTO(st, ft_json_parse_keep_dups(text, len, ipath, &root), out); /* "not valid JSON (...)" */
    /* a tensor listed twice is an error (below); any other repeated key means its last value, as in Python */
    for (const cJSON *e = cJSON_IsObject(root) ? root->child : NULL; e; e = e->next) {
        const cJSON *d = strcmp(e->string, "weight_map") == 0 ? ft_json_dup_key(e) : NULL;
        if (d) {
            st = FT_ERR(FT_E_FORMAT, "%s: weight_map lists tensor \"%.200s\" twice", ipath, d->string);
            goto out;
        }
    }
    FT_CHECK_GOTO(st, ft_json_dedupe(root, ipath), out);
    if (!cJSON_IsObject(root)) {
        st = FT_ERR(FT_E_FORMAT, "%s: not a JSON object", ipath);
        goto out;
    }
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!map) {
        st = FT_ERR(FT_E_FORMAT, "%s: missing \"weight_map\"", ipath);
        goto out;
    }
    if (!cJSON_IsObject(map) || !map->child) {
        st = FT_ERR(FT_E_FORMAT, "%s: \"weight_map\" is not a non-empty JSON object", ipath);
        goto out;
    }
    nw = cJSON_GetArraySize(map);
    FT_CHECK_GOTO(st, ft_malloc((void **)&wm, (size_t)nw * sizeof *wm, "safetensors index"), out);
    FT_CHECK_GOTO(st, ft_malloc((void **)&names, (size_t)nw * sizeof *names, "safetensors index"), out);
    int64_t i = 0;
    for (const cJSON *v = map->child; v; v = v->next, i++) {
        if (!cJSON_IsString(v)) {
            st = FT_ERR(FT_E_FORMAT, "%s: weight_map entry \"%.200s\" is not a string", ipath, v->string);
            goto out;
        }
        const char *s = v->valuestring;
        if (!s[0] || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
            st = FT_ERR(FT_E_FORMAT, "%s: shard name \"%.200s\" must be a plain file name in the index's directory",
                        ipath, s);
            goto out;
        }
        wm[i].tensor = v->string;
        wm[i].shard = s;
        names[i] = v->valuestring;
    }
    qsort(wm, (size_t)nw, sizeof *wm, ft_st_cmp_wm);
    for (i = 1; i < nw; i++) {
        if (strcmp(wm[i - 1].tensor, wm[i].tensor) == 0) {
            st = FT_ERR(FT_E_FORMAT, "%s: weight_map lists tensor \"%.200s\" twice", ipath, wm[i].tensor);
            goto out;
        }
    }
    /* Distinct shard names, sorted: model-00001-of-N first. */
    qsort(names, (size_t)nw, sizeof *names, ft_st_cmp_str);
    int32_t ns = 0;
    for (i = 0; i < nw; i++)
        if (i == 0 || strcmp(names[i], names[i - 1]) != 0) names[ns++] = names[i];
    FT_CHECK_GOTO(st, ft_st_alloc_shards(m, ns), out);
    const char *slash = strrchr(ipath, '/');
    int dlen = slash ? (int)(slash - ipath) + 1 : 0;
    for (int32_t s = 0; s < ns; s++) {
        size_t plen = (size_t)dlen + strlen(names[s]) + 1;
        FT_CHECK_GOTO(st, ft_malloc((void **)&m->shards[s].path, plen, "safetensors shard path"), out);
        snprintf(m->shards[s].path, plen, "%.*s%s", dlen, ipath, names[s]);
    }
    for (int32_t s = 0; s < ns; s++) {
        struct stat sb;
        if (stat(m->shards[s].path, &sb) != 0 && errno == ENOENT) { /* name the index that promised it */
            st = FT_ERR(FT_E_IO, "%s: shard \"%.200s\" listed in weight_map is missing (%s)", ipath, names[s],
                        m->shards[s].path);
            goto out;
        }
        FT_CHECK_GOTO(st, ft_st_load_shard(m, s), out);
    }
    FT_CHECK_GOTO(st, ft_st_index_names(m), out);
    for (i = 0; i < nw; i++) {
        const ft_st_tensor *t = ft_st_lookup_exact(m, wm[i].tensor);
        if (!t) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\" listed in weight_map is missing from shard %.200s", ipath,
                        wm[i].tensor, wm[i].shard);
            goto out;
        }
        const char *base = strrchr(t->shard, '/');
        base = base ? base + 1 : t->shard;
        if (strcmp(base, wm[i].shard) != 0) {
            st = FT_ERR(FT_E_FORMAT, "%s: tensor \"%.200s\" is listed under shard %.200s but stored in %s", ipath,
                        wm[i].tensor, wm[i].shard, t->shard);
            goto out;
        }
    }
    if (m->n > nw) /* shards hold tensors the index does not list: transformers loads by file, so keep them */
        ft_warn("%s: %lld tensors in the shards are not listed in weight_map", ipath, (long long)(m->n - nw));
    st = FT_OK;
out:
    cJSON_Delete(root);
    ft_free(text);
    ft_free(wm);
    ft_free(names);
    return st;
}

static int ft_st_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int ft_st_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

ft_status ft_st_open(ft_st_model **out, const char *path) {
    *out = NULL;
    ft_st_model *m;
    struct stat sb;
    if (!path || stat(path, &sb) != 0)
        return FT_ERR(FT_E_IO, "%s: cannot open: %s", path ? path : "(null)", path ? strerror(errno) : "no path");
    FT_TRY(ft_calloc((void **)&m, sizeof *m, "safetensors model"));
    long pg = sysconf(_SC_PAGESIZE);
    m->page = pg > 0 ? pg : 4096;
    ft_status st;
    char *file = NULL;
    FT_CHECK_GOTO(st, ft_strdup(&m->path, path, "safetensors path"), fail);
    const char *target = path;
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + 64;
        FT_CHECK_GOTO(st, ft_malloc((void **)&file, n, "safetensors path"), fail);
        snprintf(file, n, "%s/model.safetensors", path);
        if (!ft_st_is_file(file)) {
            snprintf(file, n, "%s/model.safetensors.index.json", path);
            if (!ft_st_is_file(file)) {
                st = FT_ERR(FT_E_IO, "%s: no model.safetensors or model.safetensors.index.json in this directory", path);
                goto fail;
            }
        }
        target = file;
    }
    if (ft_st_ends_with(target, ".json")) {
        FT_CHECK_GOTO(st, ft_st_open_index(m, target), fail);
    } else {
        FT_CHECK_GOTO(st, ft_st_alloc_shards(m, 1), fail);
        FT_CHECK_GOTO(st, ft_strdup(&m->shards[0].path, target, "safetensors path"), fail);
        FT_CHECK_GOTO(st, ft_st_load_shard(m, 0), fail);
        FT_CHECK_GOTO(st, ft_st_index_names(m), fail);
    }
    ft_free(file);
    *out = m;
    return FT_OK;
fail:
    ft_free(file);
    ft_st_close(m);
    return st;
}

void ft_st_close(ft_st_model *m) {
    if (!m) return;
    for (int32_t i = 0; i < m->n_shards; i++) {
        ft_st_shard *sh = &m->shards[i];
        if (sh->map) munmap(sh->map, (size_t)sh->size);
        if (sh->fd >= 0) close(sh->fd);
        ft_free(sh->path);
    }
    for (int64_t i = 0; i < m->n; i++) ft_free((void *)m->t[i].name);
    for (int64_t i = 0; i < m->n_meta; i++) {
        ft_free(m->meta[i].key);
        ft_free(m->meta[i].value);
    }
    ft_free(m->shards);
    ft_free(m->t);
    ft_free(m->by_name);
    ft_free(m->meta);
    ft_free(m->path);
    ft_free(m);
}

int64_t ft_st_count(const ft_st_model *m) { return m->n; }
int32_t ft_st_shard_count(const ft_st_model *m) { return m->n_shards; }
int64_t ft_st_total_bytes(const ft_st_model *m) { return m->total_bytes; }

const char *ft_st_shard_path(const ft_st_model *m, int32_t i) {
    return i >= 0 && i < m->n_shards ? m->shards[i].path : NULL;
}

const ft_st_tensor *ft_st_at(const ft_st_model *m, int64_t i) { return i >= 0 && i < m->n ? &m->t[i] : NULL; }

int ft_st_has(const ft_st_model *m, const char *name) { return ft_st_lookup(m, name) != NULL; }

ft_status ft_st_find(const ft_st_model *m, const char *name, ft_st_tensor *info) {
    const ft_st_tensor *t = ft_st_lookup(m, name);
    if (!t) return FT_ERR(FT_E_FORMAT, "%s: no tensor named \"%.200s\"", m->path, name);
    if (info) *info = *t;
    return FT_OK;
}

ft_status ft_st_tensor_dtype(const ft_st_tensor *t, ft_dtype *out) {
    if (t->dtype == FT_DTYPE_COUNT)
        return FT_ERR(FT_E_UNSUPPORTED, "%s: tensor \"%.200s\" has dtype %s (supported: F32, F16, BF16, I32, U8)",
                      t->shard, t->name, ft_st_dtype_name(t->st_dtype));
    *out = t->dtype;
    return FT_OK;
}

const char *ft_st_get_metadata(const ft_st_model *m, const char *key) {
    for (int64_t i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta[i].key, key) == 0) return m->meta[i].value;
    return NULL;
}

int64_t ft_st_metadata_count(const ft_st_model *m) { return m->n_meta; }

void ft_st_release_tensor_pages(const ft_st_model *m, const ft_st_tensor *t) {
    if (!t || t->shard_index < 0 || t->shard_index >= m->n_shards || t->nbytes <= 0) return;
    const ft_st_shard *sh = &m->shards[t->shard_index];
    int64_t pg = m->page;
    int64_t b = t->file_offset / pg * pg;
    int64_t e = (t->file_offset + t->nbytes + pg - 1) / pg * pg;
    int64_t lim = (sh->size + pg - 1) / pg * pg;
    if (e > lim) e = lim;
    if (e <= b) return;
    /* Read-only private file pages: dropping them loses nothing, a later access re-reads the file. */
    (void)madvise(sh->map + b, (size_t)(e - b), MADV_DONTNEED);
    (void)posix_fadvise(sh->fd, b, e - b, POSIX_FADV_DONTNEED);
}
