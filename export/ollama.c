/* ollama.c: see ollama.h. Templates are Ollama's own for these families (ollama/ollama
 * template/llama3-instruct.gotmpl, chatml.gotmpl, mistral-instruct.gotmpl). */
#include "export/ollama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export_util.h"

static const char FT_TMPL_LLAMA3[] =
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>";
static const char *const FT_STOP_LLAMA3[] = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", NULL};
static const char FT_TMPL_CHATML[] =
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n";
static const char *const FT_STOP_CHATML[] = {"<|im_start|>", "<|im_end|>", NULL};
static const char FT_TMPL_MISTRAL[] = "[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }} [/INST]";
static const char *const FT_STOP_MISTRAL[] = {"[INST]", "[/INST]", NULL};
/* Mistral Small 3+ (V7-Tekken): no spaces, the system prompt between its own tokens */
static const char FT_TMPL_MISTRAL_V7[] =
    "{{ if .System }}[SYSTEM_PROMPT]{{ .System }}[/SYSTEM_PROMPT]{{ end }}[INST]{{ .Prompt }}[/INST]{{ .Response }}";

ft_status ft_ollama_write(const char *path, const char *from, const char *adapter, const char *chat_template,
                          const char *eos_text) {
    const char *tmpl = NULL;
    const char *const *stops = NULL;
    if (chat_template && strstr(chat_template, "<|start_header_id|>")) tmpl = FT_TMPL_LLAMA3, stops = FT_STOP_LLAMA3;
    else if (chat_template && strstr(chat_template, "<|im_start|>")) tmpl = FT_TMPL_CHATML, stops = FT_STOP_CHATML;
    else if (chat_template && strstr(chat_template, "[SYSTEM_PROMPT]")) tmpl = FT_TMPL_MISTRAL_V7, stops = FT_STOP_MISTRAL;
    else if (chat_template && strstr(chat_template, "[INST]")) tmpl = FT_TMPL_MISTRAL, stops = FT_STOP_MISTRAL;
    size_t cap = 4096 + strlen(from) + strlen(adapter) + (tmpl ? strlen(tmpl) : 0);
    char *s = malloc(cap);
    if (!s) return FT_ERR(FT_E_OOM, "out of memory");
    int n = snprintf(s, cap, "# Written by ftune export --ollama. Create the model with:\n"
                             "#   ollama create NAME -f %s\nFROM %s\nADAPTER %s\n", path, from, adapter);
    if (tmpl) n += snprintf(s + n, cap - (size_t)n, "TEMPLATE \"\"\"%s\"\"\"\n", tmpl);
    if (stops)
        for (int i = 0; stops[i]; i++) n += snprintf(s + n, cap - (size_t)n, "PARAMETER stop \"%s\"\n", stops[i]);
    else if (eos_text && eos_text[0] && !strchr(eos_text, '"'))
        n += snprintf(s + n, cap - (size_t)n, "PARAMETER stop \"%s\"\n", eos_text);
    ft_status st = ft_write_text(path, s);
    free(s);
    return st;
}
