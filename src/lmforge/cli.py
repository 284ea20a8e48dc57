"""The `lmforge` command: thin verbs over the stages and modules.

Every verb takes a run directory (and, when starting one, a recipe) plus
`--set section.key=value` overrides. User mistakes print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lmforge.cli_reading import add_reading_verbs
from lmforge.errors import UserError

QUICKSTART_RECIPE = "quickstart.toml"
QUICKSTART_CHAT_RECIPE = "quickstart_chat.toml"
GOVERNANCE_TASKS = {"governance", "bias", "privacy"}   # `lmforge eval --task`: the governance stage
PREEMPTED_STATUS = 75          # EX_TEMPFAIL: stopped by SIGTERM / SIGUSR1 with a checkpoint; try again


def _recipes_dir() -> Path:
    """recipes/ of a source checkout, or the copy shipped inside the package."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "recipes", Path.cwd() / "recipes"):
        if candidate.is_dir():
            return candidate
    raise UserError("cannot find the recipes/ folder")


def _open_or_create(args, recipe_path: str | None):
    from lmforge.rundir import RunDir
    return RunDir.for_writing(args.run, recipe_path, args.set, force=getattr(args, "force", False))


def _next_steps(rundir) -> str:
    run = rundir.path
    result = rundir.own_result.relative_to(run)
    card = ", data/data_card.md" if rundir.data_card.is_file() else ""
    head = (f"\nEverything is in {run}/ (report.html, model_card.md, {result}, "
            f"checkpoints/{card}).\nNext:\n")
    if result.stem == "classify":
        return head + (f"  lmforge classify {run} --text 'a text to label'\n"
                       f"  lmforge serve {run}            # POST /v1/classify on http://127.0.0.1:8000\n"
                       f"  lmforge info {run}\n")
    if result.stem == "clip":
        return head + (f"  lmforge embed {run} --text 'a small red triangle' --image picture.png\n"
                       f"  lmforge serve {run}            # POST /v1/embeddings, texts and images\n"
                       f"  lmforge info {run}\n")
    if rundir.load_recipe().train.objective == "masked_lm":
        return head + (f"  lmforge fill-mask {run} --text 'The <|mask|> is here.'\n"
                       f"  lmforge serve {run}            # POST /v1/embeddings on http://127.0.0.1:8000\n"
                       f"  lmforge info {run}\n")
    return head + (f"  lmforge generate {run} --prompt 'The list' --max-tokens 60\n"
                   f"  lmforge chat {run}\n"
                   f"  lmforge serve {run}            # OpenAI-compatible API + web chat on http://127.0.0.1:8000\n"
                   f"  lmforge info {run}\n")


# ---------------------------------------------------------------------------- verbs
def _run_recipe(args):
    from lmforge import stages
    args.run = args.out or f"runs/{Path(args.recipe).stem}"
    run, recipe = _open_or_create(args, args.recipe)
    stages.run_all(run, recipe, force=args.force, workers=args.workers)
    return run


def cmd_run(args) -> None:
    print(_next_steps(_run_recipe(args)))


def cmd_quickstart(args) -> None:
    """Pre-train on Python's docs and source into OUT-base, then fine-tune that to chat into OUT
    (--set applies to the pre-training)."""
    out = Path(args.out)
    base = out.parent / f"{out.name}-base"
    args.recipe, args.out = str(_recipes_dir() / QUICKSTART_RECIPE), str(base)
    _run_recipe(args)
    args.recipe, args.out, args.set = str(_recipes_dir() / QUICKSTART_CHAT_RECIPE), str(out), [f"model.init_from={base}"]
    print(_next_steps(_run_recipe(args)))


def cmd_prepare(args) -> None:
    from lmforge import stages
    run, recipe = _open_or_create(args, args.recipe)
    if args.shard:
        stages.data_shard(run, recipe, stages.parse_shard(args.shard), workers=args.workers)
        return
    if args.merge:
        stages.merge_data(run, recipe)
    stages.prepare(run, recipe, force=args.force, workers=args.workers)


def cmd_train(args) -> None:
    from lmforge import stages
    run, recipe = _open_or_create(args, args.recipe)
    stages.train(run, recipe, force=args.force, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        stages.report(run, recipe)


def cmd_eval(args) -> None:
    from lmforge import stages
    if not args.task or set(args.task) & GOVERNANCE_TASKS:
        if not set(args.task or []) <= GOVERNANCE_TASKS:
            raise UserError(f"--task {' / '.join(sorted(GOVERNANCE_TASKS))} run the governance stage; "
                            f"give them without other tasks")
        run, recipe = _open_or_create(args, None)
        stages.evaluate(run, recipe, force=args.force and not args.task)
        result = stages.governance(run, recipe, force=bool(args.task) or args.force)
        stages.report(run, recipe)
        if args.task and result is not None:
            from lmforge.governance.gate import table
            for part in ("bias", "privacy"):
                if part in result and ("governance" in args.task or part in args.task):
                    print(json.dumps({part: result[part]}, indent=1))
            print(table(result["checks"]))
        return
    from lmforge.eval.harness import format_table, run_tasks
    models = [args.run] + list(args.compare or [])
    results = run_tasks(models, args.task, limit=args.limit, seed=args.seed, num_fewshot=args.fewshot,
                        chat=args.chat)
    print(format_table(results))
    if (Path(args.run) / "recipe.toml").is_file():
        from lmforge.recipe import load_recipe
        from lmforge.rundir import RunDir
        run = RunDir.open(args.run)
        stages.report(run, load_recipe(run.recipe_path))


def cmd_export(args) -> None:
    out = Path(args.out or f"{args.run.rstrip('/')}-{args.format}")
    if args.quantize and args.format != "onnx":
        raise UserError("--quantize is for --format onnx")
    if args.dtype and args.format != "gguf":
        raise UserError("--dtype is for --format gguf")
    if args.format == "gguf":
        from lmforge.export.gguf import export_gguf
        export_gguf(args.run, out, force=args.force, dtype=args.dtype or "f16")
        print(f"wrote {out}/ (model.gguf for llama.cpp; `ollama create NAME -f {out}/Modelfile`)")
        return
    if args.format == "onnx":
        from lmforge.export.onnx import export_onnx
        export_onnx(args.run, out, force=args.force, quantize=args.quantize)
        print(f"wrote {out}/ (model.onnx with past key/values in and out; see onnx_config.json)")
        return
    from lmforge.export.hf import export_hf
    export_hf(args.run, out, force=args.force)
    print(f"wrote {out}/ (load it with transformers' AutoModelFor*.from_pretrained and AutoTokenizer)")


def cmd_merge(args) -> None:
    from lmforge.models.lora import merge_run
    out = merge_run(args.run, args.out, force=args.force)
    print(f"wrote {out}/ (the adapter folded into the base weights); try `lmforge generate {out} --prompt ...`")


def cmd_import(args) -> None:
    from lmforge.export.hf import import_hf
    out = import_hf(args.folder, args.out, force=args.force)
    print(f"wrote {out}/ from {args.folder}; try `lmforge info {out}`")


def _engine(args):
    from lmforge.infer.engine import Engine
    from lmforge.rundir import RunDir
    path = Path(args.run)
    if not path.exists():
        raise UserError(f"run directory not found: {path}")
    if (path / "recipe.toml").exists():
        RunDir.open(path)
    return Engine.from_run(path, dtype=args.dtype, threads=args.threads)


def _sampling(args) -> dict:
    return dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                top_p=args.top_p, seed=args.seed)


def cmd_generate(args) -> None:
    engine = _engine(args)
    try:
        if args.no_stream:
            print(args.prompt + engine.generate(args.prompt, **_sampling(args)).text)
            return
        sys.stdout.write(args.prompt)
        for piece in engine.stream(args.prompt, **_sampling(args)):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    finally:
        engine.close()


def cmd_chat(args) -> None:
    from lmforge.infer.chat_repl import run_chat
    engine = _engine(args)
    try:
        run_chat(engine, system=args.system, **_sampling(args))
    finally:
        engine.close()


def cmd_serve(args) -> None:
    from lmforge.serve.app import serve
    if not args.sagemaker and not Path(args.run or "").exists():
        raise UserError(f"run directory not found: {args.run}")
    if args.run:
        from lmforge.governance.gate import release_warning
        warning = release_warning(args.run)
        if warning:
            print(f"lmforge: warning: {warning}", file=sys.stderr)
    serve(args.run, host=args.host, port=args.port, api_key=args.api_key, rate_limit=args.rate_limit,
          max_tokens_limit=args.max_tokens_limit, cors_origins=args.cors_origin or None,
          audit_db=args.audit_db, audit_hash_prompts=args.hash_prompts, sagemaker_mode=args.sagemaker,
          dtype=args.dtype, max_batch=args.max_batch, threads=args.threads)


def cmd_info(args) -> None:
    from lmforge.rundir import RunDir
    run = RunDir.open(args.run)
    recipe = run.load_recipe()
    manifest = run.manifest()
    print(f"run        {run.path}  (recipe '{recipe.name}', seed {recipe.seed})")
    print(f"versions   " + ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items()
                                      if k != "platform"))
    for stage, rec in manifest.get("stages", {}).items():
        extra = {k: v for k, v in rec.items() if k not in ("seconds", "finished", "inputs", "outputs")}
        print(f"stage      {stage:<10} {rec['seconds']:>8.1f}s  " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    res_path = run.own_result
    if res_path.exists():
        res = json.loads(res_path.read_text())
        if "mlm_accuracy" in res:
            print(f"results    masked-LM accuracy {res['mlm_accuracy']} (unigram baseline "
                  f"{res['unigram_mlm_accuracy']}), pseudo-perplexity {res['pseudo_perplexity']}")
        elif "bits_per_byte" in res:
            print(f"results    val loss {res['val_loss']}, bits/byte {res['bits_per_byte']} "
                  f"(gzip {res['gzip_bits_per_byte']}, xz {res['xz_bits_per_byte']})")
        else:   # a fine-tuning task's measurement
            print("results    " + ", ".join(f"{k} {v}" for k, v in res.items()
                                            if isinstance(v, (int, float)) and not isinstance(v, bool)))
    from lmforge.models.io import list_steps
    ckpts = [p.name for p in list_steps(run.checkpoints)]
    if (run.checkpoints / "best").exists():
        ckpts.append("best")
    print(f"checkpoints {', '.join(ckpts) or 'none'}")
    for name in ("report.html", "model_card.md", "data/data_card.md"):
        if (run.path / name).exists():
            print(f"file       {run.path / name}")


def cmd_report(args) -> None:
    from lmforge import stages
    from lmforge.rundir import RunDir
    run = RunDir.open(args.run)
    stages.report(run, run.load_recipe())
    print(f"wrote {run.report} and {run.model_card}")


def cmd_tokenizer_eval(args) -> None:
    from lmforge.tokenizer.evaluate import compare_tokenizers
    texts: dict[str, list[str]] = {}
    for item in args.text:
        lang, _, path = item.partition("=")
        if not path:
            raise UserError(f"--text {item!r}: expected LANG=PATH")
        p = Path(path)
        if not p.is_file():
            raise UserError(f"--text {lang}: file not found: {p}")
        texts[lang] = [line for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    paths = []
    for t in args.tokenizers:
        p = Path(t)
        paths.append(p / "tokenizer" if (p / "tokenizer" / "tokenizer.json").exists() else p)
    print(json.dumps(compare_tokenizers(paths, texts), indent=2))


def cmd_arena(args) -> None:
    from lmforge.eval.arena import serve_arena
    serve_arena(args.models, Path(args.prompts), Path(args.db), host=args.host, port=args.port,
                max_tokens=args.max_tokens, chat=args.chat)


# ---------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser, recipe: bool = True) -> None:
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value (repeatable), e.g. --set train.max_steps=200")
    p.add_argument("--force", action="store_true", help="redo stages that are already done")
    if recipe:
        p.add_argument("--recipe", help="recipe TOML to start the run directory from")


DECODE_DTYPE_HELP = ("auto (default: int8 weights where this machine decodes faster with them at no loss cost, "
                     "else float32) | float32 | bfloat16 | int8 (int8 weights in the decode kernel)")


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dtype", default="auto", help=DECODE_DTYPE_HELP)
    p.add_argument("--threads", type=int, default=None)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lmforge", description="From raw text to a deployed language model.")
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("run", help="run a recipe end to end: data, tokenizer, train, evaluate, report")
    p.add_argument("recipe")
    p.add_argument("--out", help="run directory (default runs/<recipe name>)")
    p.add_argument("--workers", type=int, default=None)
    _common(p, recipe=False)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("quickstart", help="the built-in end-to-end run: pre-train on Python's own docs and "
                                          "source (OUT-base), fine-tune to chat (OUT)")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--workers", type=int, default=None)
    _common(p, recipe=False)
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("prepare", help="data + tokenizer + token shards")
    p.add_argument("run")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--shard", metavar="I/N", help="clean only shard I of N of the inputs (one Slurm array task)")
    p.add_argument("--merge", action="store_true", help="join the cleaned shards, then tokenize")
    _common(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train (also under torchrun for several processes)")
    p.add_argument("run")
    p.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run (validation metrics, or --task ...)")
    p.add_argument("run")
    p.add_argument("--task", action="append", help="task name or task file (repeatable)")
    p.add_argument("--compare", action="append", help="another run or Hugging Face model directory")
    p.add_argument("--limit", type=int, default=None, help="examples per task")
    p.add_argument("--fewshot", type=int, default=None)
    p.add_argument("--chat", action="store_true", help="ask each prompt as a user message in the model's chat "
                                                       "template (for chat fine-tuned models)")
    p.add_argument("--seed", type=int, default=0)
    _common(p, recipe=False)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("generate", help="complete a prompt")
    p.add_argument("run")
    p.add_argument("--prompt", required=True)
    p.add_argument("--no-stream", action="store_true")
    _sampling_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("merge", help="fold a LoRA run's adapter into full weights")
    p.add_argument("run")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_merge)

    add_reading_verbs(sub)

    p = sub.add_parser("chat", help="interactive chat in the terminal")
    p.add_argument("run")
    p.add_argument("--system", default=None)
    _sampling_args(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("serve", help="OpenAI-compatible API and web chat")
    p.add_argument("run", nargs="?")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--api-key", default=None, help="required on non-loopback hosts (or LMFORGE_API_KEY)")
    p.add_argument("--rate-limit", type=int, default=0, help="requests per minute per key (0 = off)")
    p.add_argument("--max-tokens-limit", type=int, default=None)
    p.add_argument("--cors-origin", action="append")
    p.add_argument("--audit-db", default=None, help="SQLite file for the audit log")
    p.add_argument("--hash-prompts", action="store_true", help="store prompts hashed in the audit log")
    p.add_argument("--sagemaker", action="store_true", help="GET /ping + POST /invocations on port 8080")
    p.add_argument("--dtype", default="auto", help=DECODE_DTYPE_HELP)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="write a run's model in another tool's format")
    p.add_argument("run")
    p.add_argument("--format", choices=["hf", "onnx", "gguf"], default="hf",
                   help="hf: a Hugging Face transformers folder; onnx: an ONNX Runtime decoder with its KV cache; "
                        "gguf: llama.cpp / Ollama")
    p.add_argument("--dtype", choices=["f32", "f16", "q8_0"], default=None, help="gguf: weight type (default f16)")
    p.add_argument("--quantize", choices=["int8"], default=None, help="onnx: also write int8 dynamic-quantized weights")
    p.add_argument("--out", default=None, help="output folder (default RUN-FORMAT)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="a run directory from a Hugging Face model folder (safetensors)")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="the run directory to create")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("info", help="what is in a run directory")
    p.add_argument("run")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("report", help="rewrite report.html and model_card.md")
    p.add_argument("run")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("tokenizer", help="tokenizer tools")
    tsub = p.add_subparsers(dest="tverb", required=True, metavar="ACTION")
    t = tsub.add_parser("eval", help="bytes per token per language, for one or more tokenizers")
    t.add_argument("tokenizers", nargs="+", help="run directories, tokenizer dirs or tokenizer.json files")
    t.add_argument("--text", action="append", required=True, metavar="LANG=PATH")
    t.set_defaults(func=cmd_tokenizer_eval)

    p = sub.add_parser("arena", help="blind pairwise human evaluation in the browser")
    p.add_argument("models", nargs="+")
    p.add_argument("--prompts", required=True)
    p.add_argument("--db", default="arena.sqlite")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--chat", action="store_true", help="ask each prompt in the models' chat template")
    p.set_defaults(func=cmd_arena)
    from lmforge.governance.cli import add_verbs
    add_verbs(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lmforge.train.loop import Preempted
    try:
        status = args.func(args)
    except UserError as e:
        print(f"lmforge: error: {e}", file=sys.stderr)
        return 2
    except Preempted as e:     # a checkpoint is saved: the scheduler may requeue the job on this status
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"lmforge: train: {e}; checkpoint saved; continue with `lmforge train {getattr(args, 'run', 'RUN')} "
                  f"--resume`", file=sys.stderr)
        return PREEMPTED_STATUS
    except KeyboardInterrupt:
        print("lmforge: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
