"""Grammar engines for constrained decoding: llguidance (what lmforge uses) against xgrammar.

Same tokenizer (the quickstart's, or a tiny one trained here), same JSON schemas. For each
engine: the time to prepare the tokenizer, to compile each schema, and the mean time to
compute one next-token mask along random valid walks through the grammar (the cost added
to every decode step of a constrained request). xgrammar is optional (`pip install xgrammar`;
it pulls in triton); without it only llguidance is measured.

    python bench/grammar.py [--run runs/quickstart] [--walks 20]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import llguidance
import torch
from tokenizers import Tokenizer

from lmforge.infer import grammar
from lmforge.infer.tiny import sample_corpus, train_tokenizer
from lmforge.tokenizer.load import load_tokenizer
from lmforge.tokenizer.specials import STOP_TOKENS

sys.path.insert(0, str(Path(__file__).parent))
from architectures import cpu_name  # noqa: E402

SCHEMAS = {
    "person": {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
               "properties": {"name": {"type": "string", "maxLength": 20},
                              "age": {"type": "integer", "minimum": 0, "maximum": 150},
                              "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 4}}},
    "any_object": {"type": "object"},
    "nested": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "maxItems": 3,
               "items": {"type": "object", "required": ["id", "ok"],
                         "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"},
                                        "note": {"type": "string", "maxLength": 10}}}}}},
}


def walk(allowed, consume, finished, vocab: int, rng: random.Random, steps: int = 60) -> list[float]:
    """Random valid tokens until the grammar completes; the time of each mask computation."""
    times = []
    for _ in range(steps):
        if finished():
            break
        t0 = time.perf_counter()
        ids = allowed()
        times.append(time.perf_counter() - t0)
        if not ids:
            break
        consume(rng.choice(ids))
    return times


def bench_llguidance(tok: Tokenizer, stops: set[int], walks: int) -> dict:
    t0 = time.perf_counter()
    engine = grammar.GrammarEngine(tok, tok.get_vocab_size(), stops)
    out = {"tokenizer_s": time.perf_counter() - t0, "schemas": {}}
    for name, schema in SCHEMAS.items():
        t0 = time.perf_counter()
        g = grammar.json_schema(schema)
        engine.constraint(g)
        compile_s = time.perf_counter() - t0
        times = []
        for w in range(walks):
            c = engine.constraint(g)
            times += walk(lambda: c.allowed().nonzero().flatten().tolist(), c.advance, lambda: c.complete,
                          tok.get_vocab_size(), random.Random(w))
        out["schemas"][name] = {"compile_s": compile_s, "mask_us": 1e6 * sum(times) / len(times)}
    return out


def bench_xgrammar(tok: Tokenizer, stops: set[int], walks: int) -> dict | None:
    try:
        import transformers
        import xgrammar as xgr
    except ImportError:
        return None
    t0 = time.perf_counter()
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok)
    info = xgr.TokenizerInfo.from_huggingface(hf, vocab_size=tok.get_vocab_size(), stop_token_ids=sorted(stops))
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)
    out = {"tokenizer_s": time.perf_counter() - t0, "schemas": {}}
    vocab = tok.get_vocab_size()
    for name, schema in SCHEMAS.items():
        t0 = time.perf_counter()
        compiled = compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        compile_s = time.perf_counter() - t0
        times = []
        bitmask = xgr.allocate_token_bitmask(1, vocab)
        shifts = torch.arange(32, dtype=torch.int32)
        for w in range(walks):
            m = xgr.GrammarMatcher(compiled)

            def allowed():
                m.fill_next_token_bitmask(bitmask)
                bits = ((bitmask[0].unsqueeze(-1) >> shifts) & 1).flatten()[:vocab].bool()
                return bits.nonzero().flatten().tolist()
            times += walk(allowed, m.accept_token, m.is_terminated, vocab, random.Random(w))
        out["schemas"][name] = {"compile_s": compile_s, "mask_us": 1e6 * sum(times) / len(times)}
    return out


def decode_overhead(run: Path, repeats: int = 5) -> dict | None:
    """Per-token decode time of the run's model with and without a grammar (greedy, one stream)."""
    if not (run / "manifest.json").is_file():
        return None
    from lmforge.infer.engine import Engine
    engine = Engine.from_run(run, threads=1)
    prompt, per_token = "The json module", {}
    for name, g in (("free", None), ("json_schema", grammar.json_schema(SCHEMAS["nested"]))):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = engine.generate(prompt, max_tokens=64, temperature=0, grammar=g, ignore_eos=g is None)
            best = min(best, (time.perf_counter() - t0) / max(r.completion_tokens, 1))
        per_token[name] = best
    engine.close()
    return {"free_ms_per_token": 1e3 * per_token["free"], "json_schema_ms_per_token": 1e3 * per_token["json_schema"],
            "constrained_over_free": per_token["json_schema"] / per_token["free"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/quickstart", help="a run whose tokenizer to use (else a tiny one)")
    ap.add_argument("--walks", type=int, default=20)
    args = ap.parse_args()
    tok_dir = Path(args.run) / "tokenizer"
    tok = load_tokenizer(tok_dir) if tok_dir.is_dir() else train_tokenizer(sample_corpus(), 4096)
    stops = {i for i in map(tok.token_to_id, STOP_TOKENS) if i is not None}
    results = {"llguidance": bench_llguidance(tok, stops, args.walks),
               "xgrammar": bench_xgrammar(tok, stops, args.walks)}
    for name, r in results.items():
        print(json.dumps({"engine": name, **(r or {"skipped": "not installed"})}))
    overhead = decode_overhead(Path(args.run))
    if overhead:
        print(json.dumps({"decode": args.run, **overhead}))
    summary = {"cpu": cpu_name(), "vocab": tok.get_vocab_size(),
               "llguidance_version": llguidance.get_version()}
    lg, xg = results["llguidance"], results["xgrammar"]
    for name in SCHEMAS:
        summary[f"{name}_mask_us_llguidance"] = round(lg["schemas"][name]["mask_us"], 1)
        if xg:
            summary[f"{name}_mask_us_xgrammar"] = round(xg["schemas"][name]["mask_us"], 1)
            summary[f"{name}_compile_ms_ratio_xgrammar_over_llguidance"] = round(
                xg["schemas"][name]["compile_s"] / lg["schemas"][name]["compile_s"], 2)
    if overhead:
        summary["constrained_decode_over_free"] = round(overhead["constrained_over_free"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
