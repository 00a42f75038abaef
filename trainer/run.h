/* run.h: `ftune train RECIPE.yaml`: one training run from a recipe, unattended, resumable.
 *
 * The run directory (recipe output_dir) holds:
 *   recipe.yaml               the resolved recipe (every key, defaults included)
 *   data/                     tokenized shards keyed by a data fingerprint (dataset.h)
 *   metrics.jsonl             one line per step and per evaluation (metrics.h)
 *   loss.svg                  training and validation loss, redrawn at each evaluation and checkpoint
 *   samples/step-000120.txt   greedy completions of eval.prompts at each evaluation
 *   checkpoints/step-000120.ckpt  the last checkpoint.keep checkpoints (checkpoint.h)
 *   best/                     the lowest validation loss's adapter (PEFT) + ftune-best.json (eval.keep_best)
 *   final/                    adapter_config.json + adapter_model.safetensors (PEFT layout)
 *   .lock                     held (flock) while a run uses the directory
 *
 * Before any weight is read, the run plans itself (plan.h ft_plan_for_backend: this recipe on the
 * backend it opened, model.memory_gib capping that backend when set) and keeps the plan beside the
 * backend, so running out of memory anywhere names the allocation, the plan's figures and the knob.
 *
 * The loop is train.h's ft_train_step over micro-batches from the dataset's batcher, with the
 * guard (guard.h) deciding whether each update is applied. Evaluation every eval.every_steps
 * (and at the end); a checkpoint every checkpoint.every_steps / every_minutes and at the end.
 *
 * Interruption: SIGINT/SIGTERM set a flag (a sig_atomic_t: the one piece of process state this
 * module has, because a signal handler can reach nothing else); the loop checks it between
 * steps, writes a checkpoint and returns FT_E_INTERRUPTED with the message "interrupted at step
 * N: checkpoint written to ...; resume with: ftune train RECIPE --resume", noting the signal
 * (ft_error_note_signal) so that main ends the process by it, as shells and schedulers expect. A second
 * signal terminates at once (the handler is one-shot); SIGINT stays ignored where the run was started
 * ignoring it (a background job of a script). SIGXFSZ is ignored during the run so a
 * file size limit shows up as a clean write error instead of killing the process.
 *
 * Resume ("latest" or a checkpoint path) restores everything the checkpoint holds and cuts
 * metrics.jsonl back to its step, so the rest of the run, and the final adapter, are bit for bit
 * those of an uninterrupted run on the same backend and thread count. A checkpoint that fails
 * its checksum is an error naming it; with resume_fallback the next older one is used (the bad
 * file is renamed *.corrupt). Checkpoints newer than the one resumed from are renamed
 * *.superseded so "latest" and rotation only ever see this run's line. */
#ifndef FT_RUN_H
#define FT_RUN_H

#include "kernels/status.h"
#include "trainer/recipe.h"

/* Exports beyond the PEFT adapter (export.formats other than peft, export.merged), given the
 * final/ directory. The export module provides it; without one these are skipped with a note. */
typedef ft_status (*ft_export_fn)(void *user, const ft_recipe *r, const char *final_dir);

typedef struct ft_run_opts {
    const char *recipe_path;  /* as the user typed it, for the resume hint */
    const char *resume;       /* NULL: a new run; "latest", "auto" (latest if any, else new) or a checkpoint file */
    int resume_fallback;      /* on a corrupt checkpoint, use the previous good one */
    ft_export_fn export_fn;
    void *export_user;
} ft_run_opts;

ft_status ft_run(const ft_recipe *r, const ft_run_opts *o);

#endif
