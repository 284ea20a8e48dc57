"""Fine-tuning speed and memory, lmforge against Hugging Face, in one invocation:

    full SFT   lmforge's loop (train.objective = "sft")   vs  transformers' Trainer
    LoRA SFT   lmforge's adapter (train.adapter = "lora") vs  PEFT's LoRA in the same Trainer

    python bench/finetune.py [--steps 40] [--batch 16] [--seq-len 256] [--shape quickstart|30m] [--compile]

The same random weights (the Llama layout, loaded by transformers from lmforge's HF export), the
same packed windows of the built-in standard-library chat set (data/python_qa.py, rendered with
lmforge's chat template), the same batch, sequence length, optimizer (AdamW, fused where torch has
it) and autocast dtype (the one lmforge's dtype = "auto" picks on this machine). lmforge masks
attention block-diagonally inside a packed window; the HF side is given plain causal attention
over the same windows (its CPU attention path has no packed mask), which is less work for it.

Each contestant runs in its own process, so peak RSS is its own; `peak_rss_mb` is the process's
maximum resident set, `model_rss_mb` that minus the resident set before the model was built.
tokens/s counts every token of every window (padding included), measured after 5 warm-up steps;
conversation_tokens_per_s only the conversations' tokens, which is what packing is for: the
"packing" entry compares lmforge's packed windows with one conversation per row, right-padded to
the batch's longest (the same batch size, plain causal attention).
Prints one JSON line per contestant and, last, {"full": {"lmforge", "hf", "ratio"}, "lora": ...,
"cpu": ...}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from architectures import cpu_name  # noqa: E402

WARMUP = 5
SHAPES = {"quickstart": dict(d_model=128), "30m": dict(n_layer=8, n_head=8, d_model=512)}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(work: Path, shape: str, seq_len: int) -> None:
    """A random model of the shape (lmforge run + its HF export) and the packed training windows."""
    from lmforge.data.python_qa import stdlib_qa
    from lmforge.data.conversations import render, to_messages
    from lmforge.export.hf import export_hf
    from lmforge.infer.tiny import make_tiny_run
    from lmforge.models.llama import LlamaConfig
    from lmforge.tokenizer.load import load_tokenizer
    run = make_tiny_run(work / "run", LlamaConfig(preset="llama-mini", max_seq_len=seq_len, **SHAPES[shape]),
                        vocab_size=4096)
    export_hf(run, work / "hf")
    tok = load_tokenizer(run / "tokenizer")
    examples = [render(to_messages(obj, where), tok) for obj, where in stdlib_qa()]
    (work / "examples.json").write_text(json.dumps(examples))


def windows(work: Path, seq_len: int, batch: int, steps: int, padded: bool = False):
    """`steps` batches of `batch` windows: packed (several conversations per window, lmforge's
    layout), or padded (one conversation per row, right-padded to the batch's longest, plain
    causal attention). Each batch carries "real_tokens", the conversation tokens it holds."""
    from lmforge.train.objectives.sft import pack, window_batch
    examples = json.loads((work / "examples.json").read_text())
    packed = [[i] for i in range(len(examples))] if padded else pack([len(ids) for ids, _ in examples], seq_len)
    out = []
    for s in range(steps):
        chosen = [packed[(s * batch + j) % len(packed)] for j in range(batch)]
        b = window_batch(examples, chosen, seq_len, 0)
        b["real_tokens"] = sum(min(len(examples[i][0]), seq_len) for w in chosen for i in w)
        if padded:
            width = max(min(len(examples[w[0]][0]), seq_len) for w in chosen)
            b = {k: v[:, :width] if k != "attend" else None for k, v in b.items() if k != "real_tokens"} | \
                {"real_tokens": b["real_tokens"]}
        out.append(b)
    return out


def run_lmforge(work: Path, lora: bool, steps: int, batch: int, seq_len: int, compile: bool = False,
                padded: bool = False) -> dict:
    from lmforge.models.io import load_model
    from lmforge.models.lora import LoraSpec, add_lora
    from lmforge.train.config import TrainConfig
    from lmforge.train.loop import Trainer
    from lmforge.train.objectives import SFT
    data = windows(work, seq_len, batch, steps, padded)
    before = rss_mb()
    model = load_model(work / "run").train()
    if lora:
        add_lora(model, LoraSpec(rank=8, alpha=16, dropout=0.0, targets=TARGETS))
    cfg = TrainConfig(objective="sft", batch_size=batch, seq_len=seq_len, max_steps=steps, optimizer="adamw",
                      lr=1e-4, warmup_steps=0, eval_every=0, checkpoint_every=0, log_every=1, dtype="auto",
                      compile=compile)

    class Fixed:      # the same windows the HF side gets, step by step
        def __init__(self):
            self.global_batch, self.seq_len = batch, seq_len

        def get(self, step, micro):
            return data[step]

    times = []
    trainer = Trainer(model, cfg, Fixed(), [], seed=0, objective=SFT([], [], 0, seq_len),
                      log=lambda r: times.append(time.perf_counter()) if r.get("kind") == "train" else None)
    trainer.fit()
    seconds = times[-1] - times[WARMUP - 1]
    tps = batch * seq_len * (steps - WARMUP) / seconds
    real = sum(b["real_tokens"] for b in data[WARMUP:]) / seconds
    return {"tokens_per_s": round(tps, 1), "conversation_tokens_per_s": round(real, 1),
            "peak_rss_mb": round(peak_mb(), 1), "model_rss_mb": round(peak_mb() - before, 1),
            "dtype": str(trainer.autocast_dtype or "float32")}


def run_hf(work: Path, lora: bool, steps: int, batch: int, seq_len: int, bf16: bool) -> dict:
    import transformers
    data = windows(work, seq_len, batch, steps)
    before = rss_mb()
    model = transformers.AutoModelForCausalLM.from_pretrained(work / "hf", dtype=torch.float32)
    if lora:
        import peft
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                           target_modules=TARGETS, task_type="CAUSAL_LM"))
    rows = [{"input_ids": b["input_ids"][i], "position_ids": b["position_ids"][i],
             "labels": torch.cat([torch.full((1,), -100), b["labels"][i][:-1]])}
            for b in data for i in range(batch)]     # HF shifts labels itself: un-shift lmforge's
    times = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    args = transformers.TrainingArguments(output_dir=str(work / "hf-out"), per_device_train_batch_size=batch,
                                          max_steps=steps, learning_rate=1e-4, lr_scheduler_type="constant",
                                          bf16=bf16, use_cpu=True, report_to=[], save_strategy="no",
                                          logging_strategy="no", dataloader_num_workers=0, optim="adamw_torch_fused",
                                          disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[Clock()],
                                   data_collator=lambda items: {k: torch.stack([it[k] for it in items])
                                                                for k in items[0]})
    trainer.train()
    tps = batch * seq_len * (steps - WARMUP) / (times[-1] - times[WARMUP - 1])
    return {"tokens_per_s": round(tps, 1), "peak_rss_mb": round(peak_mb(), 1),
            "model_rss_mb": round(peak_mb() - before, 1), "dtype": "bfloat16" if bf16 else "float32"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="quickstart")
    ap.add_argument("--compile", action="store_true",
                    help="add lmforge with train.compile = true (full SFT; its compile time is not in tokens/s)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        engine, kind = a.worker.split("-")
        work = Path(a.work)
        if engine.startswith("lmforge"):
            out = run_lmforge(work, kind == "lora", a.steps, a.batch, a.seq_len, compile=engine == "lmforgecompiled",
                              padded=engine == "lmforgepadded")
        else:
            from lmforge.train.mfu import fastest_autocast_dtype
            out = run_hf(work, kind == "lora", a.steps, a.batch, a.seq_len,
                         bf16=fastest_autocast_dtype("cpu") == torch.bfloat16)
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, a.shape, a.seq_len)
        results = {"full": {}, "lora": {}}
        for kind in ("full", "lora"):
            for engine in ("lmforge", "hf") + (("lmforgecompiled",) if a.compile and kind == "full" else ()):
                cmd = [sys.executable, __file__, "--worker", f"{engine}-{kind}", "--work", str(work),
                       "--steps", str(a.steps), "--batch", str(a.batch), "--seq-len", str(a.seq_len)]
                line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                results[kind][engine] = json.loads(line)
                print(json.dumps({"contestant": f"{engine}-{kind}", **results[kind][engine]}), flush=True)
            results[kind]["ratio"] = round(results[kind]["lmforge"]["tokens_per_s"] / results[kind]["hf"]["tokens_per_s"], 2)
            if "lmforgecompiled" in results[kind]:
                results[kind]["compiled_ratio"] = round(results[kind]["lmforgecompiled"]["tokens_per_s"] /
                                                        results[kind]["hf"]["tokens_per_s"], 2)
        # packing: the same conversations, several per window (block mask) or one per padded row
        cmd = [sys.executable, __file__, "--worker", "lmforgepadded-full", "--work", str(work),
               "--steps", str(a.steps), "--batch", str(a.batch), "--seq-len", str(a.seq_len)]
        padded = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(json.dumps({"contestant": "lmforge-full-padded", **padded}), flush=True)
        results["packing"] = {"packed_conversation_tokens_per_s": results["full"]["lmforge"]["conversation_tokens_per_s"],
                              "padded_conversation_tokens_per_s": padded["conversation_tokens_per_s"]}
    results["lora_vs_full_peak_rss"] = {e: round(results["lora"][e]["peak_rss_mb"] / results["full"][e]["peak_rss_mb"], 3)
                                        for e in ("lmforge", "hf")}
    print(json.dumps({**results, "shape": a.shape, "batch": a.batch, "seq_len": a.seq_len, "cpu": cpu_name()}))


if __name__ == "__main__":
    main()
