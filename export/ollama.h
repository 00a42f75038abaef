/* ollama.h: an Ollama Modelfile for a base GGUF plus our LoRA adapter GGUF.
 *
 * Ollama's TEMPLATE is a Go template, not Jinja: the chat template is recognized by family
 * (Llama 3 header tokens, ChatML <|im_start|> as Qwen uses, Mistral [INST]) and the matching
 * Go template and stop tokens are written; an unrecognized or missing template writes none (Ollama
 * then uses the base model's) with only the EOS text as stop. */
#ifndef FT_OLLAMA_H
#define FT_OLLAMA_H

#include "kernels/status.h"

/* Writes `path` (atomically). from: FROM line (a GGUF path or an Ollama model name);
 * adapter: ADAPTER path; chat_template/eos_text may be NULL. */
ft_status ft_ollama_write(const char *path, const char *from, const char *adapter, const char *chat_template,
                          const char *eos_text);

#endif
