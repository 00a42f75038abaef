/* adapter_attach.h: a LoRA adapter applied on the fly to a loaded model, for `ftune generate
 * --adapter` and `ftune eval --adapter`: the product training runs (trainer/lora.h), dropout off,
 * over the frozen weights as loaded (NF4 or 16-bit), so what the run evaluated is what the user
 * tries, without merging a model first.
 *
 * The adapter: what `ftune export` takes and checks the same way (ft_export_load_adapter): a PEFT
 * directory (`RUN/best`: the lowest validation loss's), a run directory (its final/, else its newest
 * checkpoint) or a checkpoint file.
 * One rank and one scale for all its modules (ftune's own, and most PEFT adapters); per-module
 * patterns are refused with the `ftune merge` command that applies them. */
#ifndef FT_ADAPTER_ATTACH_H
#define FT_ADAPTER_ATTACH_H

#include "kernels/backend.h"
#include "kernels/status.h"
#include "trainer/lora.h"
#include "trainer/model.h"

/* Loads the adapter at path onto be and sets it on m; *out (ft_lora_free after m no longer runs)
 * holds it. */
ft_status ft_model_attach_adapter(ft_model *m, ft_backend *be, const char *path, ft_lora **out);

#endif
