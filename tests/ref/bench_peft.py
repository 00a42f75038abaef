#!/usr/bin/env python3
"""bench_peft.py: the reference QLoRA throughput that `ftune bench` is compared against (issue #9).

What it measures: tokens/s, seconds per step, peak device memory and the loss of every step of QLoRA
training with the usual Python stack (transformers + PEFT + bitsandbytes, or optionally unsloth) on a
random model of one of `ftune bench`'s shapes, with random token ids.  Nothing is downloaded: the
model's config.json is made from the same shape table as trainer/bench.c (SHAPES below: keep the two in
step), and the weights are random.

How it matches `ftune bench --shape S --seq T --micro-batch B --steps N` (defaults lora-r 16, alpha 2r,
all targets, nf4, recompute on, lr 1e-3 constant, AdamW (0.9, 0.999, 1e-8, wd 0), clip 1.0):
  - frozen decoder linears (q, k, v, o, gate, up, down of every layer) are bitsandbytes Linear4bit:
    NF4, blocksize 64, double quantization (compress_statistics), compute dtype bf16; the embeddings,
    norms and lm_head stay bf16, untied, as in ftune;
  - LoRA r=16, alpha=32, dropout 0, no bias, on those seven modules of every layer (not lm_head),
    through peft.get_peft_model (PEFT's bnb Linear4bit LoRA layer); LoRA weights in fp32 under a bf16
    autocast, which is what the HF Trainer does with bf16=True;
  - gradient checkpointing of every decoder layer (use_reentrant=False), attn_implementation "sdpa"
    (causal, no mask: flash attention on an H100), bf16;
  - torch.optim.AdamW on the LoRA parameters (fused on CUDA), clip_grad_norm_ 1.0, constant lr;
  - the same B x T micro-batch of random ids every step (labels = the ids, shifted inside the
    model), so LoRA memorizes it and the loss falls, as in ftune bench;
  - tokens/s over the steps after the --warmup ones (default 1: ftune bench leaves out its first step
    too), each step timed between torch.cuda.synchronize calls; peak memory is
    torch.cuda.max_memory_allocated over the whole run (model included; ftune reports its allocator's
    peak the same way).  Differences left: ftune's NF4 weights are uniform random of std 0.02 and
    these normal of std 0.02; HF computes the cross-entropy on fp32 logits it materializes.

A 70B model cannot be made in bf16 in host memory, so the model is built on the meta device
(accelerate.init_empty_weights) and then filled layer by layer directly on the device: each linear's
random bf16 weight is made on the GPU and quantized there to NF4 (Params4bit), so no more than one
bf16 weight exists at a time.

Out of device memory is a result, not a crash: the BENCH_PEFT_JSON line then says "oom": true (exit
status 0).  --seq max searches the longest sequence whose training step fits (CUDA only): doubling
from 4096, then halving the gap down to --seq-step tokens, one step per try.

--unsloth: the same run through unsloth's FastLanguageModel (the random model is written as a
pre-quantized NF4 checkpoint under --unsloth-dir, about 0.56 bytes per parameter, and loaded from
there, since unsloth has no path for a model in memory).  Exits 3 when `import unsloth` fails.

CPU: `--device cpu` runs the same code through bitsandbytes' CPU backend (NF4 dequantized to bf16 on
the host, torch matmuls): it trains, slowly; good for checking the script, not for comparing speed.

Output: the report on stdout, ending with ONE line `BENCH_PEFT_JSON {...}` (shape, layers, seq,
micro_batch, rank, tokens_per_s, step_s, peak_bytes, losses, versions, ...), also written to --json.

Examples:
  python3 tests/ref/bench_peft.py --shape llama-3-70b --seq 4096 --micro-batch 1 --steps 10
  python3 tests/ref/bench_peft.py --shape llama-3-8b --layers 4 --seq max
  /work/venv/bin/python tests/ref/bench_peft.py --device cpu --shape tiny --steps 3
"""
import argparse
import gc
import json
import math
import os
import platform
import resource
import sys
import time
import warnings

# The shapes of trainer/bench.c (config.json values of the released models):
# arch, hidden C, intermediate F, layers L, heads H, kv heads Hkv, head_dim D, vocab V, rope_theta,
# llama3 rope scaling, rms_norm_eps.
SHAPES = {
    "llama-3-70b": ("LlamaForCausalLM", 8192, 28672, 80, 64, 8, 128, 128256, 500000.0, True, 1e-5),
    "llama-3-8b": ("LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128, 128256, 500000.0, True, 1e-5),
    "qwen3-32b": ("Qwen3ForCausalLM", 5120, 25600, 64, 64, 8, 128, 151936, 1000000.0, False, 1e-6),
    "qwen3-14b": ("Qwen3ForCausalLM", 5120, 17408, 40, 40, 8, 128, 151936, 1000000.0, False, 1e-6),
    "mistral-small-24b": ("MistralForCausalLM", 5120, 32768, 40, 32, 8, 128, 131072, 100000000.0, False, 1e-5),
    "tiny": ("LlamaForCausalLM", 128, 384, 2, 4, 2, 32, 512, 10000.0, False, 1e-5),
}
MODEL_TYPE = {"LlamaForCausalLM": "llama", "Qwen3ForCausalLM": "qwen3", "MistralForCausalLM": "mistral"}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
INIT_STD = 0.02  # transformers' initializer_range; ftune bench uses the same standard deviation


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="llama-3-8b", choices=list(SHAPES))
    ap.add_argument("--layers", type=int, default=0, help="keep the first N layers (0: all)")
    ap.add_argument("--vocab", type=int, default=0, help="vocabulary size override (0: the shape's)")
    ap.add_argument("--seq", default="4096", help="tokens per sequence, or max (CUDA: the longest that fits)")
    ap.add_argument("--seq-step", type=int, default=1024, help="--seq max: search granularity in tokens")
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps, warm-up included")
    ap.add_argument("--warmup", type=int, default=1, help="first steps left out of tokens/s (ftune bench: 1)")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank")
    ap.add_argument("--alpha", type=float, default=0.0, help="LoRA alpha (0: 2 x rank, as ftune)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default=None, choices=["cuda", "cpu"], help="default: cuda when available")
    ap.add_argument("--json", default=None, help="also write the result JSON to this file")
    ap.add_argument("--unsloth", action="store_true", help="train through unsloth's FastLanguageModel")
    ap.add_argument("--unsloth-dir", default=None,
                    help="--unsloth: where the random pre-quantized checkpoint goes (default /tmp/bench_peft_<shape>)")
    a = ap.parse_args()
    if a.seq != "max" and not (a.seq.isdigit() and int(a.seq) >= 2):
        ap.error("--seq: a number >= 2 or max")
    if a.micro_batch < 1 or a.steps < 1 or a.rank < 1 or a.warmup < 0 or a.seq_step < 1:
        ap.error("need --micro-batch, --steps, --rank, --seq-step >= 1 and --warmup >= 0")
    L = SHAPES[a.shape][3]
    if not 0 <= a.layers <= L:
        ap.error(f"--layers {a.layers}: {a.shape} has {L} layers")
    return a


def say(*args):
    print(*args, flush=True)


def emit(res, path):
    """The one machine-readable line, and the same JSON in --json."""
    line = json.dumps(res, sort_keys=False)
    print("BENCH_PEFT_JSON " + line, flush=True)
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, path)


def config_dict(a):
    """config.json of the shape, key for key what trainer/bench.c's ft_bench_config_json writes."""
    arch, C, F, L, H, Hkv, D, V, theta, llama3, eps = SHAPES[a.shape]
    d = {"architectures": [arch], "model_type": MODEL_TYPE[arch], "hidden_size": C, "intermediate_size": F,
         "num_hidden_layers": a.layers or L, "num_attention_heads": H, "num_key_value_heads": Hkv, "head_dim": D,
         "vocab_size": a.vocab or V, "rms_norm_eps": eps, "rope_theta": theta, "max_position_embeddings": 131072,
         "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": False}
    if llama3:
        d["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}
    if arch == "MistralForCausalLM":
        d["sliding_window"] = None
    return d


# ---- the random NF4 model, built on the meta device and filled one tensor at a time ------------------

def build_model(a, device):
    import torch
    import bitsandbytes as bnb
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, CONFIG_MAPPING

    d = config_dict(a)
    cfg = CONFIG_MAPPING[d["model_type"]].from_dict(d)
    # parameters on meta (no memory); buffers (rotary inv_freq) real, on the host, moved below
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    gen = torch.Generator(device=device).manual_seed(a.seed)

    def random_bf16(shape):
        return torch.empty(shape, dtype=torch.bfloat16, device=device).normal_(0.0, INIT_STD, generator=gen)

    def materialize(module):
        """Every meta parameter of module (not its children): norms 1, the rest normal(0, 0.02)."""
        for name, p in list(module._parameters.items()):
            if p is None or p.device.type != "meta":
                continue
            if "Norm" in type(module).__name__:
                t = torch.ones(p.shape, dtype=torch.bfloat16, device=device)
            else:
                t = random_bf16(p.shape)
            module._parameters[name] = torch.nn.Parameter(t, requires_grad=False)
        for name, b in list(module._buffers.items()):
            if b is not None and b.device != torch.device(device):
                module._buffers[name] = b.to(device)

    def nf4_linear(lin):
        """A Linear4bit standing in for lin, its random weight made and quantized on the device."""
        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                              compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                              quant_storage=torch.uint8, device="meta")
        w = random_bf16((lin.out_features, lin.in_features))
        q.weight = bnb.nn.Params4bit(w, requires_grad=False, blocksize=64, compress_statistics=True,
                                     quant_type="nf4", quant_storage=torch.uint8, module=q).to(device)
        del w
        if lin.bias is not None:
            q.bias = torch.nn.Parameter(random_bf16((lin.out_features,)), requires_grad=False)
        return q

    layers = model.model.layers
    for layer in layers:
        for parent in list(layer.modules()):
            for cname, child in list(parent.named_children()):
                if cname in TARGETS and isinstance(child, torch.nn.Linear):
                    setattr(parent, cname, nf4_linear(child))
        for m in layer.modules():
            materialize(m)
    for m in model.modules():  # embeddings, final norm, lm_head, rotary buffers
        materialize(m)
    left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    assert not left, f"parameters left on meta: {left[:5]}"
    # what transformers sets on a model loaded with BitsAndBytesConfig(load_in_4bit=True); PEFT picks
    # its bnb LoRA layer from it
    model.is_loaded_in_4bit = True
    model.config.quantization_config = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                        "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                        "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8"}
    return model


def enable_checkpointing(model):
    kw = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the older name warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


def lora_config(a):
    from peft import LoraConfig
    return LoraConfig(r=a.rank, lora_alpha=a.alpha or 2 * a.rank, lora_dropout=0.0, bias="none",
                      target_modules=TARGETS, task_type="CAUSAL_LM")


def peft_model(a, device):
    from peft import get_peft_model
    model = build_model(a, device)
    enable_checkpointing(model)
    return get_peft_model(model, lora_config(a))


def write_tokenizer(path):
    """A four-word tokenizer beside the checkpoint: unsloth's from_pretrained loads the model's tokenizer
    along with it (the runs feed random ids, so its vocabulary does not matter)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    special = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(special)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(special)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>", "bos_token": "<s>",
                   "eos_token": "</s>", "pad_token": "<pad>", "model_max_length": 131072}, f, indent=1)


def write_prequantized(model, a, path):
    """The random NF4 model as a pre-quantized bitsandbytes checkpoint (what save_pretrained writes for
    a model loaded in 4 bit: the packed codes plus each weight's quant-state tensors), one safetensors
    file per decoder layer so that no more than a layer is in host memory."""
    from safetensors.torch import save_file
    os.makedirs(path, exist_ok=True)
    sd = model.state_dict()
    groups, index = {}, {}
    for k in sd:
        groups.setdefault(k.split(".")[2] if k.startswith("model.layers.") else "rest", []).append(k)
    for g, keys in groups.items():
        fname = f"model-{g}.safetensors"
        save_file({k: sd[k].detach().to("cpu").contiguous() for k in keys}, os.path.join(path, fname),
                  metadata={"format": "pt"})
        index.update({k: fname for k in keys})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": index}, f)
    write_tokenizer(path)
    with open(os.path.join(path, "config.json"), "w") as f:  # last: its presence marks a complete checkpoint
        json.dump(dict(config_dict(a), quantization_config=model.config.quantization_config), f, indent=1)


def unsloth_model(a, device, max_seq):
    """The same random model through unsloth: written as a pre-quantized NF4 checkpoint (kept for the
    next run), loaded by FastLanguageModel.from_pretrained (unsloth has no entry point for a model
    already in memory), LoRA through FastLanguageModel.get_peft_model with unsloth's checkpointing."""
    import torch
    from unsloth import FastLanguageModel

    path = a.unsloth_dir or f"/tmp/bench_peft_{a.shape}_{a.layers or SHAPES[a.shape][3]}"
    if not os.path.exists(os.path.join(path, "config.json")):
        model = build_model(a, device)
        write_prequantized(model, a, path)
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    model, _ = FastLanguageModel.from_pretrained(path, max_seq_length=max_seq, dtype=torch.bfloat16,
                                                 load_in_4bit=True)
    return FastLanguageModel.get_peft_model(model, r=a.rank, lora_alpha=a.alpha or 2 * a.rank, lora_dropout=0.0,
                                            bias="none", target_modules=TARGETS,
                                            use_gradient_checkpointing="unsloth", random_state=a.seed)


# ---- training --------------------------------------------------------------------------------------

class Trainer:
    def __init__(self, model, a, device):
        import torch
        self.torch, self.model, self.device = torch, model, device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                     fused=device == "cuda")
        self.vocab = model.config.vocab_size
        self.gen = torch.Generator(device="cpu").manual_seed(a.seed ^ 0xDA7A)
        self.batches = {}

    def batch(self, B, T):
        """The same random ids every step for a given B x T."""
        if (B, T) not in self.batches:
            ids = self.torch.randint(0, self.vocab, (B, T), generator=self.gen)
            self.batches[(B, T)] = ids.to(self.device)
        return self.batches[(B, T)]

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def step(self, B, T):
        """One optimizer step; (loss, grad norm before clipping, seconds)."""
        torch = self.torch
        ids = self.batch(B, T)
        self.sync()
        t0 = time.perf_counter()
        with torch.autocast(device_type=self.device, dtype=torch.bfloat16):
            loss = self.model(input_ids=ids, labels=ids).loss
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        loss, gn = loss.item(), gn.item()
        self.sync()
        return loss, gn, time.perf_counter() - t0

    def fits(self, B, T):
        """Whether one training step of B x T fits on the device (a step that does not is undone)."""
        torch = self.torch
        ok = True
        try:
            self.step(B, T)
        except torch.cuda.OutOfMemoryError:
            ok = False  # the exception (and the frames that hold the step's tensors) ends with this block
        if not ok:
            self.release()
        self.batches.pop((B, T), None)
        return ok

    def release(self):
        self.opt.zero_grad(set_to_none=True)
        gc.collect()
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


def search_seq(tr, a, B):
    """The longest T, a multiple of --seq-step, whose training step fits: double from 4096 until a step
    runs out of memory, then bisect between the last that fit and the first that did not."""
    step = a.seq_step

    def fits(T):
        ok = tr.fits(B, T)
        say(f"  seq max: {T:6d} {'fits' if ok else 'out of memory'}")
        return ok

    lo, hi, T = 0, None, max(step, 4096 // step * step)
    while hi is None and T <= 131072:  # max_position_embeddings of every shape
        if fits(T):
            lo, T = T, 2 * T
        else:
            hi = T
    if hi is None:
        return lo
    while hi - lo > step:  # lo and hi are multiples of step, so lo < mid < hi
        mid = (lo + hi) // 2 // step * step
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def versions():
    from importlib.metadata import version, PackageNotFoundError
    v = {"python": platform.python_version()}
    for d in ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "unsloth"):
        try:
            v[d] = version(d)
        except PackageNotFoundError:
            pass
    import torch
    v["cuda"] = torch.version.cuda
    return v


def gib(n):
    return f"{n / 2**30:.2f} GiB"


def main():
    a = parse_args()
    if a.unsloth:
        try:
            import unsloth  # noqa: F401  (must come before transformers: it patches it on import)
        except Exception as e:  # ImportError, or unsloth's own refusal (no GPU, versions)
            print(f"bench_peft: --unsloth: `import unsloth` failed ({type(e).__name__}: {e}); install unsloth and "
                  "unsloth_zoo (they are not carried to the GPU machine: tests/gpu/README.md)", file=sys.stderr)
            return 3
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renames, from inside PEFT
    import torch
    import bitsandbytes  # noqa: F401  (imported before the clock starts: init_s is making the model)
    import peft  # noqa: F401
    import transformers  # noqa: F401

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("bench_peft: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if a.seq == "max" and device != "cuda":
        print("bench_peft: --seq max needs --device cuda", file=sys.stderr)
        return 2
    torch.manual_seed(a.seed)
    B = a.micro_batch
    arch, C, F, L, H, Hkv, D, V = SHAPES[a.shape][:8]
    layers = a.layers or L
    backend = "unsloth" if a.unsloth else "peft"
    res = {"shape": a.shape, "layers": layers, "seq": None if a.seq == "max" else int(a.seq), "micro_batch": B,
           "rank": a.rank, "alpha": a.alpha or 2 * a.rank, "backend": backend, "device": device,
           "device_name": torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()} CPU cores",
           "oom": False, "tokens_per_s": None, "peak_bytes": None, "versions": versions()}
    say(f"bench_peft {a.shape}: {layers} of {L} layers, C {C}, F {F}, H {H}/{Hkv} x {D}, V {a.vocab or V}, NF4 "
        f"(double quant, bf16 compute) linears, LoRA r {a.rank} alpha {res['alpha']:g} on {','.join(TARGETS)}")
    say(f"  {backend} on {device} ({res['device_name']}); torch {res['versions'].get('torch')}, transformers "
        f"{res['versions'].get('transformers')}, peft {res['versions'].get('peft')}, bitsandbytes "
        f"{res['versions'].get('bitsandbytes')}")

    stage = "build"
    try:
        t0 = time.perf_counter()
        if a.unsloth:
            model = unsloth_model(a, device, 131072 if a.seq == "max" else int(a.seq))
        else:
            model = peft_model(a, device)
        model.train()
        if device == "cuda":
            torch.cuda.synchronize()
        res["init_s"] = time.perf_counter() - t0
        res["model_bytes"] = torch.cuda.memory_allocated() if device == "cuda" else None
        ntrain = sum(p.numel() for p in model.parameters() if p.requires_grad)
        res["lora_params"] = ntrain
        say(f"  random model made in {res['init_s']:.1f} s"
            + (f" ({gib(res['model_bytes'])} on the device)" if device == "cuda" else "")
            + f"; {ntrain / 1e6:.1f} M LoRA parameters")

        tr = Trainer(model, a, device)
        stage = "seq-max"
        if a.seq == "max":
            T = search_seq(tr, a, B)
            if T == 0:
                raise torch.cuda.OutOfMemoryError(f"not even --seq {a.seq_step} fits")
            res["seq"], res["seq_max"] = T, True
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
        T = res["seq"]
        say(f"  seq {T} x micro-batch {B} = {B * T} tokens per step, {a.steps} steps ({a.warmup} warm-up)")
        stage = "train"
        say("  step        loss   grad_norm      time  tokens/s")
        steps = []
        for s in range(a.steps):
            loss, gn, dt = tr.step(B, T)
            steps.append({"loss": loss, "grad_norm": gn, "seconds": dt})
            say(f"  {s + 1:4d}  {loss:10.5f}  {gn:10.4f}  {dt:7.3f} s  {B * T / dt:8.1f}"
                + ("  (warm-up)" if s < a.warmup and a.steps > a.warmup else ""))
    except torch.cuda.OutOfMemoryError as e:
        msg = str(e).split("\n")[0][:300]
        res.update(oom=True, oom_stage=stage, oom_message=msg)
        if device == "cuda":
            res["peak_bytes"] = torch.cuda.max_memory_allocated()
        say(f"\nresult: out of device memory during {stage} ({msg})")
        emit(res, a.json)
        return 0

    timed = steps[a.warmup:] if len(steps) > a.warmup else steps
    secs = sum(s["seconds"] for s in timed)
    res.update(steps=a.steps, warmup=a.warmup, tokens_per_step=B * T, step_s=secs / len(timed),
               tokens_per_s=B * T * len(timed) / secs, losses=[s["loss"] for s in steps],
               grad_norms=[s["grad_norm"] for s in steps], step_seconds=[s["seconds"] for s in steps],
               loss_finite=all(math.isfinite(s["loss"]) and math.isfinite(s["grad_norm"]) for s in steps),
               loss_fell=len(steps) > 1 and steps[-1]["loss"] < steps[0]["loss"],
               host_rss_peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if device == "cuda":
        res["peak_bytes"] = torch.cuda.max_memory_allocated()
        res["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    else:
        res["peak_bytes"] = None  # no device allocator: see host_rss_peak_bytes
    first = a.warmup + 1 if len(steps) > a.warmup else 1
    say(f"\nresult (steps {first}-{len(steps)})")
    say(f"  tokens/s               {res['tokens_per_s']:.1f}")
    say(f"  seconds/step           {res['step_s']:.3f}")
    if device == "cuda":
        say(f"  peak memory            {gib(res['peak_bytes'])} allocated (torch), {gib(res['peak_reserved_bytes'])} "
            f"reserved; model {gib(res['model_bytes'])}")
    else:
        say(f"  peak memory            host RSS {gib(res['host_rss_peak_bytes'])} (CPU run)")
    say(f"  loss                   {steps[0]['loss']:.5f} -> {steps[-1]['loss']:.5f} "
        f"({'finite' if res['loss_finite'] else 'NOT FINITE'}, {'falling' if res['loss_fell'] else 'not falling'})")
    emit(res, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
