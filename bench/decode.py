"""Single-stream decode speed of lmforge's engine against Hugging Face `generate`.

Both run the same random weights (our state dict loads into LlamaForCausalLM
with strict names), the same dtype, greedy, KV cache on, the same number of
new tokens. Prints one JSON line per model and, last, a summary JSON line.

    python bench/decode.py [--new-tokens 128] [--dtype float32] [--repeats 3] [--threads 1] [--int8] [--auto]

--int8 also times lmforge's engine with int8 weights (`Engine(int8=True)`, what `lmforge serve
--dtype int8` runs) against the same HF float run, and says whether its greedy tokens are still
HF's (int8 weights change the numbers, so they may not be; bench/int8.py reports the bits-per-byte
cost on a trained run).

--auto also times the weights `--dtype auto` chooses for each model on this machine (the same
rule and measurement, lmforge.infer.weights_choice.decide, without its cache); the summary's
`auto_min_ratio` is the slowest of those against HF.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import transformers

from architectures import cpu_name
from lmforge.infer import weights_choice
from lmforge.infer.engine import Engine, parse_dtype
from lmforge.infer.tiny import sample_corpus, train_tokenizer
from lmforge.models.llama import LlamaConfig, Transformer

MODELS = {
    "llama-mini": LlamaConfig(preset="llama-mini", vocab_size=4096).resolved(),
    "llama-30m": LlamaConfig(preset="llama-mini", vocab_size=4096, n_layer=8, n_head=8, d_model=512,
                             max_seq_len=512).resolved(),
}


def hf_twin(model: Transformer) -> "transformers.LlamaForCausalLM":
    c = model.cfg
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.ff_dim,
        num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=c.kv_heads,
        max_position_embeddings=c.max_seq_len, rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta,
        tie_word_embeddings=c.tie_embeddings, attention_bias=False, mlp_bias=False))
    hf.load_state_dict(model.state_dict(), strict=True)
    return hf.to(next(model.parameters()).dtype).eval()


def best_times(fns: list, repeats: int) -> tuple[list[float], list[float]]:
    """Best wall and process-CPU time of each function.

    Rounds interleave the functions so a busy machine hurts all alike; CPU time is reported
    too because on a shared machine it is much steadier than wall time (with --threads 1 it
    is the work done, without the time spent waiting for a core).
    """
    wall, cpu = [float("inf")] * len(fns), [float("inf")] * len(fns)
    for round_ in range(repeats + 1):
        for i, fn in enumerate(fns):
            t, c = time.perf_counter(), time.process_time()
            fn()
            if round_:   # round 0 is the warm-up
                wall[i] = min(wall[i], time.perf_counter() - t)
                cpu[i] = min(cpu[i], time.process_time() - c)
    return wall, cpu


def bench(name: str, cfg: LlamaConfig, tokenizer, dtype, new_tokens: int, prompt_len: int, repeats: int,
          weights: str = "as dtype") -> dict:
    torch.manual_seed(0)
    model = Transformer(cfg).to(dtype).eval()
    hf = hf_twin(model)
    engine = Engine(model, tokenizer, max_batch=1, prefill_chunk=cfg.max_seq_len, int8=weights == "int8")
    prompt = torch.randint(0, cfg.vocab_size, (prompt_len,)).tolist()
    long_prompt = torch.randint(0, cfg.vocab_size, (cfg.max_seq_len - 1,)).tolist()
    try:
        if weights == "auto":
            weights = f"auto: {weights_choice.decide(engine, lambda: long_prompt).weights}"
        ours = engine.generate(prompt, max_tokens=new_tokens, temperature=0, ignore_eos=True)
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            theirs = hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 use_cache=True, pad_token_id=0)[0, prompt_len:].tolist()
        def hf_run():
            with torch.inference_mode():
                hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                            use_cache=True, pad_token_id=0)
        (t_ours, t_hf, t_prefill), (c_ours, c_hf, _) = best_times([
            lambda: engine.generate(prompt, max_tokens=new_tokens, temperature=0, ignore_eos=True),
            hf_run,
            lambda: engine.generate(long_prompt, max_tokens=1, temperature=0)], repeats)
    finally:
        engine.close()
    return {
        "model": name, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "dtype": str(dtype).removeprefix("torch."), "lmforge_weights": weights,
        "new_tokens": new_tokens,
        "lmforge_tokens_per_s": round(new_tokens / t_ours, 1), "hf_tokens_per_s": round(new_tokens / t_hf, 1),
        "ratio": round(t_hf / t_ours, 2), "prefill_tokens_per_s": round(len(long_prompt) / t_prefill, 1),
        "cpu_ratio": round(c_hf / c_ours, 2), "same_tokens_as_hf": ours.token_ids == theirs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both (0 = torch default)")
    ap.add_argument("--int8", action="store_true", help="also time lmforge with int8 weights")
    ap.add_argument("--auto", action="store_true", help="also time lmforge with the weights --dtype auto picks")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = train_tokenizer(sample_corpus(), 4096)
    rows = []
    for name in args.models.split(","):
        for weights in ("as dtype", *(["int8"] if args.int8 else []), *(["auto"] if args.auto else [])):
            rows.append(bench(name, MODELS[name], tokenizer, parse_dtype(args.dtype), args.new_tokens,
                              args.prompt_len, args.repeats, weights))
            print(json.dumps(rows[-1]), flush=True)
    first = rows[0]
    print(json.dumps({"lmforge_tokens_per_s": first["lmforge_tokens_per_s"],
                      "hf_tokens_per_s": first["hf_tokens_per_s"], "ratio": first["ratio"],
                      "min_ratio": min(r["ratio"] for r in rows if r["lmforge_weights"] == "as dtype"),
                      **({"auto_min_ratio": min(r["ratio"] for r in rows if r["lmforge_weights"].startswith("auto"))}
                         if args.auto else {}),
                      "threads": torch.get_num_threads(), "cpu": cpu_name(),
                      "models": rows}))


if __name__ == "__main__":
    main()
