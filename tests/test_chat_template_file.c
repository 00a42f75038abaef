/* test_chat_template_file.c: where a checkpoint's chat template is found when tokenizer_config.json
 * has none (kernels/json.h ft_json_chat_template_file): chat_template.jinja first (transformers
 * >= 4.43 writes it), else the "chat_template" string of a processor's chat_template.json (vision-
 * language checkpoints such as Mistral Small 3.1), else none; a malformed chat_template.json is an
 * error naming it. Then ft_tok_load on a copy of stories260K's tokenizer takes the .json one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "kernels/json.h"
#include "tests/harness.h"

static void put(const char *dir, const char *name, const char *text) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    FT_CHECK(f != NULL, "cannot write %s", p);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void rm(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
}

int main(void) {
    char dir[] = "/tmp/ftune-chat-XXXXXX";
    FT_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char *t = NULL;
    FT_CHECK_OK(ft_json_chat_template_file(dir, &t));
    FT_CHECK(t == NULL, "no file: no template");

    put(dir, "chat_template.json", "{\"chat_template\": \"{{ messages[0]['content'] }}\\n\"}");
    FT_CHECK_OK(ft_json_chat_template_file(dir, &t));
    FT_CHECK(t && strcmp(t, "{{ messages[0]['content'] }}\n") == 0, "chat_template.json: got %s", t ? t : "NULL");
    free(t);

    put(dir, "chat_template.jinja", "{{ bos_token }}");
    FT_CHECK_OK(ft_json_chat_template_file(dir, &t));
    FT_CHECK(t && strcmp(t, "{{ bos_token }}") == 0, "chat_template.jinja comes first: got %s", t ? t : "NULL");
    free(t);
    rm(dir, "chat_template.jinja");

    put(dir, "chat_template.json", "{\"template\": 1}");
    t = NULL;
    ft_status st = ft_json_chat_template_file(dir, &t);
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "chat_template.json: no \"chat_template\" string") && !t,
             "no string: %s", ft_error_msg());
    put(dir, "chat_template.json", "{\"chat_template\": \"x\"");
    st = ft_json_chat_template_file(dir, &t);
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "chat_template.json: not valid JSON"), "truncated: %s",
             ft_error_msg());

    /* the tokenizer takes it when tokenizer_config.json has no template */
    rm(dir, "chat_template.json");
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cp %s/models/stories260K/tokenizer.json %s/models/stories260K/tokenizer_config.json %s/",
             ft_test_src_dir(), ft_test_src_dir(), dir);
    FT_CHECK(system(cmd) == 0, "%s", cmd);
    ft_tok *tok = NULL;
    FT_CHECK_OK(ft_tok_load(&tok, dir));
    FT_CHECK(tok && ft_tok_chat_template(tok) == NULL, "stories260K's tokenizer_config.json has no template here");
    ft_tok_free(tok);
    put(dir, "chat_template.json", "{\"chat_template\": \"[INST]{{ messages[0]['content'] }}[/INST]\"}");
    tok = NULL;
    FT_CHECK_OK(ft_tok_load(&tok, dir));
    FT_CHECK(tok && ft_tok_chat_template(tok) && strcmp(ft_tok_chat_template(tok), "[INST]{{ messages[0]['content'] }}[/INST]") == 0,
             "ft_tok_load: template %s", tok && ft_tok_chat_template(tok) ? ft_tok_chat_template(tok) : "NULL");
    ft_tok_free(tok);

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    FT_CHECK(system(cmd) == 0, "%s", cmd);
    return ft_test_finish();
}
