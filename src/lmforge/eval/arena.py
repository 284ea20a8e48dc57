"""The human-evaluation arena: raters compare two anonymous answers to the same prompt.

    serve_arena(["runs/a", "runs/b/checkpoints/step-001000"], Path("prompts.txt"), Path("arena.db"))

Every pair of models is shown on every prompt, in one fixed shuffled order, so
different raters judge the same items (needed for Cohen's κ); which model is A and
which is B is drawn anew each time. The page (eval/static/arena.html, no external
resources) votes A / B / tie / both bad or rates one answer 1-5 with a comment.
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
from pathlib import Path

from pydantic import BaseModel, Field

from lmforge.errors import UserError
from lmforge.eval.arena_store import OUTCOMES, ArenaStore
from lmforge.eval.ranking import leaderboard, pairwise_kappa
from lmforge.progress import bar

STATIC = Path(__file__).parent / "static"


class Vote(BaseModel):
    token: str
    rater: str = Field(min_length=1, max_length=100)
    outcome: str


class Rating(BaseModel):
    token: str
    rater: str = Field(min_length=1, max_length=100)
    side: str
    score: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=5000)


def read_prompts(path: Path) -> list[str]:
    """A .jsonl file of {"prompt": ...} objects, or a text file with one prompt per line."""
    if not path.is_file():
        raise UserError(f"prompts file not found: {path}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        try:
            prompts = [json.loads(line)["prompt"] for line in lines]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{path}: each line must be a JSON object with a \"prompt\" field") from None
    else:
        prompts = lines
    if not prompts:
        raise UserError(f"{path}: no prompts")
    return prompts


def prepare_answers(store: ArenaStore, model_paths: list[str | Path], prompts: list[str], *,
                    max_tokens: int = 128, temperature: float = 0.7, seed: int = 0, chat: bool = False) -> list[str]:
    """Generate each model's answer to each prompt unless the database already has it.
    chat: each prompt is a user message in the model's chat template (a fine-tuned chat model;
    a base model asked so shows what the fine-tuning changed)."""
    from lmforge.eval.backends import load_lm
    from lmforge.eval.harness import model_labels

    if len(model_paths) < 2:
        raise UserError("the arena needs at least two models to compare")
    store.add_prompts(prompts)
    wanted = set(prompts)
    items = [(pid, text) for pid, text in store.prompts() if text in wanted]
    labels = model_labels([Path(p) for p in model_paths])
    for path, label in zip(model_paths, labels):
        missing = [(pid, text) for pid, text in items if store.answer(pid, label) is None]
        if not missing:
            continue
        lm = load_lm(path)
        for pid, text in bar(missing, desc=f"answers from {label}"):
            asked = lm.chat_prompt(text) if chat else text
            store.set_answer(pid, label, lm.generate(asked, max_tokens=max_tokens, stop=[],
                                                     temperature=temperature, seed=seed).strip())
        lm.close()
    return labels


def create_app(store: ArenaStore, models: list[str], seed: int = 0):
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, PlainTextResponse

    prompt_ids = [pid for pid, _ in store.prompts() if all(store.answer(pid, m) is not None for m in models)]
    order = [(pid, a, b) for pid in prompt_ids for a, b in itertools.combinations(sorted(models), 2)]
    random.Random(seed).shuffle(order)
    shown: dict[str, tuple[int, str, str]] = {}   # token -> (prompt, model A, model B)
    app = FastAPI(title="lmforge arena")

    def lookup(token: str) -> tuple[int, str, str]:
        if token not in shown:
            raise HTTPException(404, "unknown item; load a new one")
        return shown[token]

    @app.get("/")
    def page():
        return FileResponse(STATIC / "arena.html", media_type="text/html")

    @app.get("/api/next")
    def next_item(rater: str):
        done = store.judged_by(rater)
        for pid, m1, m2 in order:
            if (pid, m1, m2) not in done:
                a, b = (m1, m2) if secrets.randbelow(2) else (m2, m1)
                token = secrets.token_urlsafe(12)
                shown[token] = (pid, a, b)
                text = dict(store.prompts())[pid]
                return {"token": token, "prompt": text, "answer_a": store.answer(pid, a),
                        "answer_b": store.answer(pid, b), "remaining": len(order) - len(done)}
        return {"done": True, "remaining": 0}

    @app.post("/api/vote")
    def vote(v: Vote):
        if v.outcome not in OUTCOMES:
            raise HTTPException(422, f"outcome must be one of {', '.join(OUTCOMES)}")
        pid, a, b = lookup(v.token)
        store.add_vote(v.rater, pid, a, b, v.outcome)
        return {"ok": True}

    @app.post("/api/rate")
    def rate(r: Rating):
        if r.side not in ("a", "b"):
            raise HTTPException(422, "side must be a or b")
        pid, a, b = lookup(r.token)
        store.add_rating(r.rater, pid, a if r.side == "a" else b, r.score, r.comment)
        return {"ok": True}

    @app.get("/api/leaderboard")
    def board():
        votes = store.votes()
        judgements: dict[str, dict[str, str]] = {}
        for rater, pid, a, b, outcome in votes:
            label = {"a": a, "b": b}.get(outcome, outcome)   # name the winner: A/B order varies
            judgements.setdefault(rater, {})[f"{pid}:{'|'.join(sorted((a, b)))}"] = label
        return {"leaderboard": leaderboard([(a, b, o) for _, _, a, b, o in votes], models),
                "agreement": pairwise_kappa(judgements), "votes": len(votes)}

    @app.get("/api/export/{table}.csv")
    def export(table: str):
        if table not in ("votes", "ratings"):
            raise HTTPException(404, "export votes.csv or ratings.csv")
        return PlainTextResponse(store.csv(table), media_type="text/csv",
                                 headers={"Content-Disposition": f"attachment; filename={table}.csv"})

    return app


def serve_arena(model_paths: list[str | Path], prompts_file: Path, db_path: Path, host: str = "127.0.0.1",
                port: int = 8100, *, max_tokens: int = 128, temperature: float = 0.7, seed: int = 0,
                chat: bool = False) -> None:
    """Generate (or reuse) answers, then serve the arena page until interrupted."""
    import uvicorn

    store = ArenaStore(db_path)
    models = prepare_answers(store, model_paths, read_prompts(Path(prompts_file)),
                             max_tokens=max_tokens, temperature=temperature, seed=seed, chat=chat)
    uvicorn.run(create_app(store, models, seed), host=host, port=port, log_level="warning")
