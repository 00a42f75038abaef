/* token_file.h: the plain token-id format shared by `ftune eval --tokens`, `ftune train --tokens`
 * and `ftune generate --tokens`: one sequence per line, ids separated by spaces (or commas);
 * blank lines and lines starting with '#' are skipped. */
#ifndef FT_TOKEN_FILE_H
#define FT_TOKEN_FILE_H

#include <stdint.h>

#include "kernels/status.h"

typedef struct ft_token_seqs {
    int32_t *ids;      /* all ids, sequences back to back */
    int64_t *start;    /* [n + 1] offsets into ids */
    int64_t n;         /* number of sequences */
} ft_token_seqs;

/* Reads FILE; errors name FILE:LINE. */
ft_status ft_token_file_read(const char *path, ft_token_seqs *out);
/* Parses one list of ids from a string ("1 2 3" or "1,2,3"). */
ft_status ft_token_list_parse(const char *s, const char *what, ft_token_seqs *out);
void ft_token_seqs_free(ft_token_seqs *s);

#endif
