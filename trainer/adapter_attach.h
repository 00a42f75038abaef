/* adapter_attach.h: a LoRA adapter applied on the fly to a loaded model, for `ftune generate
 * --adapter` and `ftune eval --adapter`: the product training runs (trainer/lora.h), dropout off,
 * over the frozen weights as loaded (NF4 or 16-bit), so what the run evaluated is what the user
 * tries, without merging a model first.
 *
 * The adapter: what `ftune export` takes and checks the same way (ft_export_load_adapter): a PEFT
 * directory (`RUN/best`: the lowest validation loss's), a run directory (its final/, else its newest
 * checkpoint) or a checkpoint file.
 * One rank and one scale for all its modules (ftune's own, and most PEFT adapters); per-module
 * patterns are refused with the `ftune merge` command that applies them. A module the adapter holds
 * in some layers only (PEFT's layers_to_transform) is zero in the others, changing nothing there
 * (not so under DoRA, whose magnitude there would be ||W||: refused, pointing at `ftune merge`). A DoRA
 * adapter's magnitudes are the file's (lora.h mag_set).
 * Trainable-token rows (PEFT's trainable_token_indices) replace the base's rows as in training;
 * an embedding-only list on an untied model keeps lm_head's rows as the base has them. */
#ifndef FT_ADAPTER_ATTACH_H
#define FT_ADAPTER_ATTACH_H

#include "export/adapter.h"
#include "kernels/backend.h"
#include "kernels/status.h"
#include "trainer/lora.h"
#include "trainer/model.h"

/* Loads the adapter at path into *a (ft_adapter_free) and checks it against model_dir's config.json
 * as `ftune merge` does (family, layers, shapes): before the model's weights are read. */
ft_status ft_adapter_load_for(const char *model_dir, const char *path, ft_adapter *a);
/* Uploads a onto be and sets it on m (loaded from that model_dir); *out (ft_lora_free after m no
 * longer runs) holds it. */
ft_status ft_model_attach_adapter(ft_model *m, ft_backend *be, const ft_adapter *a, ft_lora **out);

#endif
