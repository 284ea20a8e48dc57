"""Training throughput (tokens/s) and MFU at the 6-layer, 384-wide, context-256 shape, for the
baseline architecture (nanoGPT's GPT-2: LayerNorm, GELU, learned positions, tied head, fp32),
lmforge's recipe (as it runs: train.compile = "auto", which a run this short leaves eager), the
same with train.compile = true (timed after its compile), and Hugging Face's Trainer on a
Llama of the same shape whose weights come from lmforge's (the layout loads directly), with
the same batch, sequence length, data and dtype choice (bf16 where this machine runs it faster).
MFU is against the measured matmul peak of the dtype each one uses.

    python bench/throughput.py [--data PATH] [--steps 12] [--batch 16]

Prints one JSON line per contestant and, last, {"baseline": {"tokens_per_s", "mfu"}, "lmforge": {...},
"lmforge_compiled": {...}, "hf_trainer": {...}, and the ratios}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.train.mfu import fastest_autocast_dtype, flops_per_token, measured_peak_flops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from architectures import cpu_name  # noqa: E402
from charlm import DEFAULT_DATA, RECIPES, build_trainer, load_chars  # noqa: E402
from decode import hf_twin  # noqa: E402

SHAPE = dict(n_layer=6, n_head=6, d_model=384, max_seq_len=256)


def measure(name: str, data, steps: int, batch: int, warmup: int, compile: bool | str = "auto") -> dict:
    train, val, vocab = data
    recipe = dict(RECIPES[name])
    recipe["model"] = replace(recipe["model"].resolved(), **SHAPE, preset="")
    records = []
    trainer = build_trainer(recipe, train, val, vocab, log=records.append, batch_size=batch, seq_len=256,
                            max_steps=warmup + steps, time_budget_s=0, eval_every=0, checkpoint_every=0,
                            keep_best=False, log_every=warmup, warmup_steps=0, compile=compile)
    trainer.validate = lambda: (float("nan"), {})    # throughput only: skip the final validation
    trainer.fit()
    after = [r for r in records if r["kind"] == "train" and r["step"] > warmup]   # windows after warm-up
    tps = sum(r["tokens_per_s"] for r in after) / len(after)
    return {"tokens_per_s": round(tps, 1), "mfu": round(sum(r["mfu"] for r in after) / len(after), 4),
            "autocast": str(trainer.autocast_dtype), "params": sum(p.numel() for p in trainer.model.parameters())}


def measure_hf_trainer(data, steps: int, batch: int, warmup: int) -> dict:
    import transformers
    train, _, vocab = data
    torch.manual_seed(0)
    source = Transformer(LlamaConfig(**SHAPE, vocab_size=vocab, tie_embeddings=False).resolved())
    model = hf_twin(source).train()
    starts = np.random.default_rng(0).integers(0, len(train) - 257, size=(warmup + steps) * batch)
    rows = [{"input_ids": torch.from_numpy(train[s:s + 256].astype(np.int64))} for s in starts]
    for r in rows:
        r["labels"] = r["input_ids"]
    autocast = fastest_autocast_dtype("cpu")
    times = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    args = transformers.TrainingArguments(output_dir="/tmp/lmforge-bench-hf", per_device_train_batch_size=batch,
                                          max_steps=warmup + steps, learning_rate=1e-3, lr_scheduler_type="constant",
                                          bf16=autocast == torch.bfloat16, use_cpu=True, report_to=[],
                                          save_strategy="no", logging_strategy="no", dataloader_num_workers=0,
                                          optim="adamw_torch_fused", disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[Clock()],
                                   data_collator=lambda items: {k: torch.stack([it[k] for it in items])
                                                                for k in items[0]})
    trainer.train()
    tps = batch * 256 * steps / (times[-1] - times[warmup - 1])
    n = sum(p.numel() for p in model.parameters()) - model.model.embed_tokens.weight.numel()
    flops = flops_per_token(n, 256, SHAPE["n_layer"], SHAPE["d_model"])
    return {"tokens_per_s": round(tps, 1), "mfu": round(tps * flops / measured_peak_flops(autocast or torch.float32), 4),
            "autocast": str(autocast), "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"data not found: {args.data}")
    data = load_chars(Path(args.data))
    out = {}
    for name in ("baseline", "lmforge"):
        out[name] = measure(name, data, args.steps, args.batch, args.warmup)
        print(json.dumps({"recipe": name, **out[name]}), flush=True)
    out["lmforge_compiled"] = measure("lmforge", data, args.steps, args.batch, args.warmup + 2, compile=True)
    print(json.dumps({"recipe": "lmforge_compiled", **out["lmforge_compiled"]}), flush=True)
    out["hf_trainer"] = measure_hf_trainer(data, args.steps, args.batch, args.warmup)
    print(json.dumps({"recipe": "hf_trainer", **out["hf_trainer"]}), flush=True)
    base, hf = out["baseline"]["tokens_per_s"], out["hf_trainer"]["tokens_per_s"]
    for name in ("lmforge", "lmforge_compiled"):
        out[f"{name}_over_baseline"] = round(out[name]["tokens_per_s"] / base, 3)
        out[f"{name}_over_hf_trainer"] = round(out[name]["tokens_per_s"] / hf, 3)
    out["ratio"] = out["lmforge_over_baseline"]
    print(json.dumps({**out, "threads": torch.get_num_threads(), "cpu": cpu_name()}))


if __name__ == "__main__":
    main()
