"""Decode speed of one model in every engine it exports to, in one run: lmforge's engine,
Hugging Face `generate`, ONNX Runtime (the exported graph, its KV cache fed back) and llama.cpp
(the GGUF at f32 and q8_0, when llama-cpp-python is installed).

    python bench/export.py [--new-tokens 128] [--prompt-len 32] [--threads 2]

Batch 1, greedy, the same random weights and prompt everywhere; models: the quickstart's shape
(4 x 128, Llama layout) and a ~30M one (8 x 512). Prints one JSON line per (model, engine) and,
last, {model: {engine: tokens_per_s}, "cpu": ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from architectures import cpu_name  # noqa: E402

from lmforge.export.gguf import export_gguf
from lmforge.export.hf import export_hf
from lmforge.export.onnx import export_onnx
from lmforge.infer.engine import Engine
from lmforge.infer.tiny import make_tiny_run
from lmforge.models.llama import LlamaConfig

MODELS = {
    "quickstart-4x128": LlamaConfig(preset="llama-mini", d_model=128),
    "llama-30m-8x512": LlamaConfig(preset="llama-mini", n_layer=8, n_head=8, d_model=512, max_seq_len=512),
}


def timed(decode) -> float:
    decode()                              # warm-up: kernels, caches, allocations
    t0 = time.perf_counter()
    n = decode()
    return n / (time.perf_counter() - t0)


def lmforge_engine(run: Path, prompt: list[int], new: int, threads: int) -> float:
    engine = Engine.from_run(run, threads=threads)
    try:
        return timed(lambda: len(engine.generate(prompt, max_tokens=new, temperature=0.0, ignore_eos=True).token_ids))
    finally:
        engine.close()


def hf_generate(folder: Path, prompt: list[int], new: int) -> float:
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([prompt])

    def decode():
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
        return out.shape[1] - len(prompt)
    return timed(decode)


def onnx_runtime(folder: Path, prompt: list[int], new: int, threads: int) -> float:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / "model.onnx"), options)
    config = json.loads((folder / "onnx_config.json").read_text())

    def decode():
        past = [np.zeros((1, config["kv_heads"], 0, config["head_dim"]), np.float32)
                for _ in range(2 * config["n_layer"])]
        ids = np.array([prompt])
        for _ in range(new):
            out = session.run(None, dict(zip(config["inputs"], [ids, *past])))
            ids, past = out[0][:, -1:].argmax(-1), out[1:]
        return new
    return timed(decode)


def llama_cpp_decode(gguf_file: Path, prompt: list[int], new: int, threads: int, context: int, repack: bool) -> float:
    """repack=False: without llama.cpp's weight repacking (its AMX q8_0 path crashes, llama.cpp #20824)."""
    import llama_cpp as lc
    default = lc.llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = repack
        return p
    lc.llama_cpp.llama_model_default_params = params
    try:
        llm = lc.Llama(model_path=str(gguf_file), n_ctx=context, n_threads=threads, verbose=False)
    finally:
        lc.llama_cpp.llama_model_default_params = default

    def decode():
        n = 0
        for _ in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            n += 1
            if n == new:
                break
        return n
    return timed(decode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import llama_cpp  # noqa: F401
        have_llama_cpp = True
    except ImportError:
        have_llama_cpp = False
    summary: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in MODELS.items():
            run = make_tiny_run(Path(tmp) / name, cfg, vocab_size=4096)
            prompt = list(range(10, 10 + args.prompt_len))
            results = {"lmforge": lmforge_engine(run, prompt, args.new_tokens, args.threads),
                       "hf_generate": hf_generate(export_hf(run, Path(tmp) / f"{name}-hf"), prompt, args.new_tokens),
                       "onnxruntime": onnx_runtime(export_onnx(run, Path(tmp) / f"{name}-onnx"), prompt,
                                                   args.new_tokens, args.threads)}
            if have_llama_cpp:
                for dtype in ("f32", "q8_0"):
                    folder = export_gguf(run, Path(tmp) / f"{name}-{dtype}", dtype=dtype)
                    context = args.prompt_len + args.new_tokens + 8
                    results[f"llama_cpp_{dtype}"] = llama_cpp_decode(folder / "model.gguf", prompt, args.new_tokens,
                                                                     args.threads, context, repack=dtype == "f32")
            for engine, tps in results.items():
                print(json.dumps({"model": name, "engine": engine, "tokens_per_s": round(tps, 1)}), flush=True)
            summary[name] = {engine: round(tps, 1) for engine, tps in results.items()}
            if have_llama_cpp:
                summary[name]["lmforge_vs_llama_cpp_f32"] = round(results["lmforge"] / results["llama_cpp_f32"], 3)
    summary["cpu"] = cpu_name()
    summary["threads"] = args.threads
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
