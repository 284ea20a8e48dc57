"""Code completion scored by running it: pass@1 on the doctests of held-out functions.

A problem is a small top-level function of a module whose docstring holds doctest examples:
the prompt is the module's imports, then the function up to the end of its docstring; the model
writes the body (greedy); the module, with that body in place of the original, runs the
function's doctests in a fresh interpreter (`python -I`, a temporary directory, a CPU-time and
an address-space limit, a wall timeout), and passes if every example does. A function whose
original body does not pass so (a relative import, output that differs run to run, ...) is not a
problem, so every problem is solvable, and pass@1 is the share of problems the model solves.
"""

from __future__ import annotations

import ast
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_BODY_LINES = 15
RUNNER = """
import doctest, importlib.util, sys
spec = importlib.util.spec_from_file_location("candidate", "candidate.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
func = getattr(module, sys.argv[1])
runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
for test in doctest.DocTestFinder(recurse=False).find(func, sys.argv[1], globs=vars(module)):
    runner.run(test, out=lambda text: None)
result = runner.summarize(verbose=False)
sys.exit(0 if result.attempted and not result.failed else 1)
"""


@dataclass
class Problem:
    name: str          # module.function
    prompt: str        # imports + signature + docstring, ending in a newline
    reference: str     # the original body
    before: str        # the module's source up to the body, and after it
    after: str


def problems_in(module: str, source: str) -> list[Problem]:
    """The module's top-level functions with doctests and a body of at most MAX_BODY_LINES lines."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    imports = "".join(ast.get_source_segment(source, n) + "\n" for n in tree.body
                      if isinstance(n, (ast.Import, ast.ImportFrom)) and not getattr(n, "level", 0))
    out = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.decorator_list or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node)
        if not doc or ">>>" not in doc or len(node.body) < 2:
            continue
        doc_end = node.body[0].end_lineno
        body = "".join(lines[doc_end:node.end_lineno])
        if node.end_lineno - doc_end > MAX_BODY_LINES or not body.strip():
            continue
        head = "".join(lines[node.lineno - 1:doc_end])
        out.append(Problem(f"{module}.{node.name}", imports + "\n\n" + head, body,
                           "".join(lines[:doc_end]), "".join(lines[node.end_lineno:])))
    return out


def _limits(cpu_s: int, memory_mb: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    return apply


def passes(problem: Problem, body: str, timeout_s: float = 10.0, memory_mb: int = 1024) -> bool:
    """Does the function with `body` pass its doctests? Run in a fresh, limited interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "candidate.py").write_text(problem.before + body + problem.after, encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-I", "-c", RUNNER, problem.name.rsplit(".", 1)[1]], cwd=tmp,
                                  capture_output=True, timeout=timeout_s,
                                  preexec_fn=_limits(int(timeout_s), memory_mb))
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0


def body_of(completion: str) -> str:
    """The completion up to the first line back at the left margin (the function has ended)."""
    kept = []
    for line in completion.splitlines(keepends=True):
        if line.strip() and not line[0].isspace():
            break
        kept.append(line)
    return "".join(kept)


def solvable(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if passes(p, p.reference)]


def pass_at_1(generate, problems: list[Problem], max_tokens: int = 160) -> dict:
    """generate(prompt, max_tokens) -> text, greedy. Returns pass@1 and each attempt."""
    samples = []
    for p in problems:
        body = body_of(generate(p.prompt, max_tokens))
        samples.append({"name": p.name, "passed": passes(p, body), "completion": body})
    solved = sum(s["passed"] for s in samples)
    return {"pass_at_1": round(solved / len(problems), 4) if problems else None, "problems": len(problems),
            "solved": solved, "samples": samples}


def stdlib_problems(modules: list[str]) -> list[Problem]:
    """The solvable problems of the standard-library modules matching `modules` (fnmatch patterns)."""
    import fnmatch
    from lmforge.data.sources import _module_name, stdlib_files
    found = []
    for path in stdlib_files():
        name = _module_name(path)
        if any(fnmatch.fnmatchcase(name, m) for m in modules):
            found += problems_in(name, path.read_text(encoding="utf-8", errors="replace"))
    return solvable(found)


def trained_on(documents: Path, modules: list[str]) -> list[str]:
    """Standard-library modules matching `modules` that a run's documents.jsonl holds as source."""
    import fnmatch
    import json
    from lmforge.data.sources import _module_name
    hits = set()
    if not documents.is_file():
        return []
    with documents.open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if doc.get("path", "").endswith(".py"):
                try:
                    name = _module_name(Path(doc["path"]))
                except ValueError:
                    continue
                if any(fnmatch.fnmatchcase(name, m) for m in modules):
                    hits.add(name)
    return sorted(hits)


def engine_pass_at_1(model, tokenizer, problems: list[Problem], max_tokens: int = 160) -> dict:
    from lmforge.infer.engine import Engine
    engine = Engine(model, tokenizer)
    try:
        def generate(prompt: str, n: int) -> str:
            ids = engine.encode(prompt)[-(engine.context - n):]      # keep the end: the signature and docstring
            return engine.generate(ids, max_tokens=n, temperature=0.0).text
        return pass_at_1(generate, problems, max_tokens)
    finally:
        engine.close()


def evaluate_code(run, recipe, model, base=None) -> dict:
    """eval.code_modules for a run: pass@1 of the model and of its base (the model.init_from model,
    when given), and whether those modules were kept out of the run's and the base's documents."""
    from lmforge.tokenizer.load import load_tokenizer
    modules = recipe.eval.code_modules
    problems = stdlib_problems(modules)
    tokenizer = load_tokenizer(run.tokenizer)
    base_docs = Path(recipe.model.init_from) / "data" / "documents.jsonl" if recipe.model.init_from else None
    leaked = trained_on(run.data / "documents.jsonl", modules) + (trained_on(base_docs, modules) if base_docs else [])
    after = engine_pass_at_1(model, tokenizer, problems)
    out = {"modules": modules, "problems": len(problems), "trained_on": sorted(set(leaked)),
           "pass_at_1": after["pass_at_1"], "solved": after["solved"], "samples": after["samples"][:5]}
    if base is not None:
        out["pass_at_1_before"] = engine_pass_at_1(base, tokenizer, problems)["pass_at_1"]
    return out
