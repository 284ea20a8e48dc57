"""The run directory: the unit of work every stage reads and writes.

    runs/<name>/
      recipe.toml  manifest.json  data/  tokenizer/  tokens/  checkpoints/
      metrics.jsonl  eval/  model_card.md  report.html  .lock (held by the process writing it)

The manifest records versions, seeds, hashes of inputs and outputs and the wall
time of every stage; a stage whose record is present is finished and is skipped
unless forced.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.recipe import Recipe, load_recipe, to_toml

LOCK = ".lock"
RECIPE = "recipe.toml"
_HELD: dict[str, object] = {}      # run directory -> its open, locked .lock file (held until exit)


def _start_over(run_path: Path) -> None:
    import shutil
    for name in (RECIPE, "manifest.json", "metrics.jsonl", "model_card.md", "report.html"):
        (run_path / name).unlink(missing_ok=True)
    for name in ("data", "tokenizer", "tokens", "checkpoints", "eval"):
        shutil.rmtree(run_path / name, ignore_errors=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict:
    import torch
    import lmforge
    return {"lmforge": lmforge.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


@dataclass
class RunDir:
    path: Path

    # ---- layout
    @property
    def recipe_path(self) -> Path: return self.path / RECIPE
    @property
    def manifest_path(self) -> Path: return self.path / "manifest.json"
    @property
    def data(self) -> Path: return self.path / "data"
    @property
    def tokenizer(self) -> Path: return self.path / "tokenizer"
    @property
    def tokens(self) -> Path: return self.path / "tokens"
    @property
    def checkpoints(self) -> Path: return self.path / "checkpoints"
    @property
    def metrics(self) -> Path: return self.path / "metrics.jsonl"
    @property
    def eval(self) -> Path: return self.path / "eval"
    @property
    def documents(self) -> Path: return self.data / "documents.jsonl"
    @property
    def data_card(self) -> Path: return self.data / "data_card.md"
    @property
    def tokenizer_json(self) -> Path: return self.tokenizer / "tokenizer.json"
    @property
    def token_files(self) -> list[Path]:
        from lmforge.tokenizer.shards import META, TRAIN_BIN, VAL_BIN
        return [self.tokens / name for name in (TRAIN_BIN, VAL_BIN, META)]
    @property
    def val_text(self) -> Path:
        from lmforge.tokenizer.shards import VAL_TEXT
        return self.tokens / VAL_TEXT
    def eval_result(self, name: str) -> Path: return self.eval / f"{name}.json"
    @property
    def own_result(self) -> Path:
        """What the evaluate stage wrote: eval/pretrain.json, or a fine-tuning task's eval/<task>.json."""
        return self.eval_result(self.manifest().get("stages", {}).get("evaluate", {}).get("result", "pretrain"))
    @property
    def model_card(self) -> Path: return self.path / "model_card.md"
    @property
    def report(self) -> Path: return self.path / "report.html"

    # ---- opening
    @classmethod
    def create(cls, path: str | Path, recipe: Recipe) -> "RunDir":
        """Open (or start) a run directory for `recipe`; refuse one made from a different recipe."""
        run = cls(Path(path))
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"{run.path} exists and is not a directory")
        if run.recipe_path.exists():
            existing = run.load_recipe()
            if existing.fingerprint() != recipe.fingerprint():
                diff = _first_difference(existing.to_dict(), recipe.to_dict())
                raise UserError(f"{run.path} holds a run of a different recipe ({diff}); "
                                f"use another --out or pass --force to start over")
        elif run.path.exists() and any(p.name != LOCK for p in run.path.iterdir()):
            # (a lone .lock is what a run stopped while starting over leaves: its lock died with it)
            raise UserError(f"{run.path} is not empty and is not an lmforge run directory")
        run.path.mkdir(parents=True, exist_ok=True)
        atomic.write_text(run.recipe_path, to_toml(recipe))
        if not run.manifest_path.exists():
            atomic.write_json(run.manifest_path, {
                "name": recipe.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": _versions(), "git_sha": _git_sha(), "seed": recipe.seed,
                "recipe_fingerprint": recipe.fingerprint(), "stages": {}})
        return run

    @classmethod
    def for_writing(cls, path: str | Path, recipe_file: str | Path | None, overrides: list[str] | None = None,
                    force: bool = False) -> tuple["RunDir", Recipe]:
        """The run directory a verb that writes works in, locked: opened with its own recipe, or
        started from `recipe_file`. With `force` and a changed recipe it is started over (only
        lmforge's own files are removed)."""
        run_path = Path(path)
        if recipe_file is None and (run_path / RECIPE).is_file():
            recipe = load_recipe(run_path / RECIPE, overrides)
        elif recipe_file is not None:
            recipe = load_recipe(recipe_file, overrides)
        else:
            raise UserError(f"{run_path} is not an lmforge run directory (no recipe.toml); "
                            f"start one with --recipe RECIPE.toml or `lmforge run RECIPE --out {run_path}`")
        if force and (run_path / RECIPE).is_file():
            cls(run_path).lock()
            if load_recipe(run_path / RECIPE).fingerprint() != recipe.fingerprint():
                _start_over(run_path)
        run = cls.create(run_path, recipe)
        run.lock()
        return run, recipe

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        run = cls(Path(path))
        if not run.path.is_dir():
            raise UserError(f"run directory not found: {run.path}")
        if not run.recipe_path.is_file():
            raise UserError(f"{run.path} is not an lmforge run directory (no recipe.toml)")
        return run

    def lock(self) -> None:
        """Hold `.lock` in the run directory while this process lives: a second lmforge process
        that would write the same run is refused. The lock is the operating system's (flock), so a
        process that crashes or is killed leaves nothing stuck. Under torchrun rank 0 holds it."""
        import fcntl
        key = str(self.path.resolve())
        if key in _HELD or int(os.environ.get("RANK", "0")) != 0:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            raise UserError(f"{self.path} is in use by another lmforge process{f' (pid {holder})' if holder else ''}; "
                            f"wait for it to finish or stop it") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        _HELD[key] = f

    def check_outputs(self, stage: str) -> None:
        """Refuse to go on from a stage whose outputs changed since it wrote them (a torn copy,
        a disk error, a stray edit): each must still have the sha256 the manifest recorded."""
        for rel, digest in self.manifest().get("stages", {}).get(stage, {}).get("outputs", {}).items():
            path = self.path / rel
            if not path.is_file():
                raise UserError(f"{path} is missing (the '{stage}' stage wrote it); redo the stage with --force")
            if sha256_file(path) != digest:
                raise UserError(f"{path} does not match the sha256 the manifest recorded when the '{stage}' stage "
                                f"wrote it; redo the stage with `lmforge prepare {self.path} --force`")

    def load_recipe(self) -> Recipe:
        return load_recipe(self.recipe_path)

    # ---- manifest
    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            return {"stages": {}}
        return json.loads(self.manifest_path.read_text())

    def stage_done(self, stage: str) -> bool:
        return stage in self.manifest().get("stages", {})

    def record_stage(self, stage: str, seconds: float, inputs: list[Path] = (), outputs: list[Path] = (),
                     **extra) -> None:
        m = self.manifest()
        m.setdefault("stages", {})[stage] = {
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "inputs": {self._rel(p): sha256_file(p) for p in inputs if p.is_file()},
            "outputs": {self._rel(p): sha256_file(p) for p in outputs if p.is_file()},
            **extra}
        m["versions"] = _versions()
        atomic.write_json(self.manifest_path, m)

    def forget_stage(self, stage: str) -> None:
        m = self.manifest()
        if m.get("stages", {}).pop(stage, None) is not None:
            atomic.write_json(self.manifest_path, m)

    def _rel(self, p: Path) -> str:
        try:
            return str(Path(p).resolve().relative_to(self.path.resolve()))
        except ValueError:
            return str(p)

    # ---- metrics
    def log_metrics(self, record: dict) -> None:
        """Append one JSON line (appends of one short line are atomic enough for a log)."""
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        out = []
        for line in self.metrics.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
        return out


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            d = _first_difference(va, vb, f"{prefix}{key}.")
            if d:
                return d
        elif va != vb:
            return f"{prefix}{key}: {va!r} there, {vb!r} now"
    return ""
