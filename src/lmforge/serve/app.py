"""The lmforge server: an OpenAI-compatible API, a web chat, metrics and an audit log.

    create_app("runs/quickstart", api_key="secret")   # -> FastAPI app (for uvicorn or tests)
    serve("runs/quickstart", host="127.0.0.1", port=8000)

A classifier run (train.objective = "classify") serves `POST /v1/classify` and answers the
generation endpoints with a 400 saying so. A model given by path loads in the background: `/health` answers 503 until it
is ready, then 200. Without an API key the server only binds to loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import sys
import threading
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from lmforge.errors import UserError
from lmforge.infer.engine import Engine
from lmforge.infer.classifier import Classifier
from lmforge.infer.embedder import Embedder
from lmforge.models.registry import get_family
from lmforge import __version__
from lmforge.serve import classify_api, embeddings_api, openai_api, openapi, sagemaker
from lmforge.serve.audit import AuditLog
from lmforge.serve.errors import install_handlers
from lmforge.serve.limits import Guard, resolve_keys
from lmforge.serve.metrics import Metrics
from lmforge.serve.openai_api import ServerState
from lmforge.serve.recorder import RequestRecorder
from lmforge.serve.schemas import ChatRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest

log = logging.getLogger("lmforge.serve")
STATIC = Path(str(resources.files("lmforge.serve") / "static"))
SWITCH_INTERVAL_S = 0.0005


def create_app(engine_or_path: Engine | str | Path, *, api_key: str | list[str] | None = None,
               model_name: str | None = None, rate_limit: int = 0, max_request_bytes: int = 1 << 20,
               max_tokens_limit: int | None = None, cors_origins: list[str] | None = None,
               audit_db: str | Path | None = None, audit_hash_prompts: bool = False,
               sagemaker_mode: bool = False, engine_options: dict | None = None) -> FastAPI:
    """Build the app. `engine_or_path`: a ready Engine, or a run/checkpoint directory to load.

    api_key: one key, a list, or None to read LMFORGE_API_KEY (comma-separated keys allowed).
    rate_limit: requests per minute per key (0 = unlimited). engine_options: Engine.from_run kwargs.
    """
    path = None if isinstance(engine_or_path, Engine) else Path(engine_or_path)
    name = model_name or (path.resolve().name if path else "lmforge")
    state = ServerState(model_name=name, guard=Guard(resolve_keys(api_key), rate_limit, max_request_bytes),
                        metrics=Metrics(), max_tokens_limit=max_tokens_limit)
    audit = AuditLog(audit_db, audit_hash_prompts) if audit_db else None

    def attach(engine: Engine) -> None:
        sched = engine.scheduler
        state.metrics.watch(lambda: sched.occupancy, lambda: sched.queued, sched.max_batch)
        state.engine = engine

    def load() -> None:
        try:
            options = engine_options or {}
            cfg = served_config(path)
            if cfg.labels:
                state.classifier = Classifier.from_run(path, threads=options.get("threads"))
            elif not get_family(cfg.arch).generative:
                state.embedder = Embedder.from_run(path, threads=options.get("threads"))
            else:
                attach(Engine.from_run(path, **(engine_options or {})))
                if state.engine.weights_choice is not None:
                    log.info("decode weights: %s (%s)", state.engine.weights_choice.weights,
                             state.engine.weights_choice.reason)
            log.info("model %s loaded from %s", name, path)
        except Exception as e:   # reported by /health; the server stays up to say so
            state.load_error = f"failed to load the model: {e}"
            log.error(state.load_error)

    if path is None:      # a ready engine serves from the start (also where no lifespan runs)
        attach(engine_or_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if path is not None:
            threading.Thread(target=load, name="lmforge-load", daemon=True).start()
        yield
        if path is not None and state.engine is not None:
            state.engine.close()
        if audit is not None:
            audit.close()

    app = FastAPI(title="lmforge", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.lmforge = state
    install_handlers(app)
    app.include_router(openai_api.build_router(state))
    app.include_router(classify_api.build_router(state))
    app.include_router(embeddings_api.build_router(state))
    if sagemaker_mode:
        app.include_router(sagemaker.build_router(state))
    openapi.install(app, {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatRequest,
                          "/tokenize": TokenizeRequest, "/detokenize": DetokenizeRequest,
                          "/v1/classify": classify_api.ClassifyRequest,
                          "/v1/embeddings": embeddings_api.EmbeddingsRequest})

    @app.get("/health")
    async def health():
        if not state.loaded:
            return JSONResponse({"status": "error" if state.load_error else "loading",
                                 "detail": state.load_error}, 503)
        choice = state.engine.weights_choice if state.engine is not None else None
        return {"status": "ok", "model": state.model_name,
                **({"decode_weights": asdict(choice)} if choice is not None else {})}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)     # the web chat page
    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(RequestRecorder, metrics=state.metrics, audit=audit)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    return app


def served_config(path: str | Path):
    """The model config of the run or checkpoint at `path`: what kind of model the server loads."""
    from lmforge.models.io import find_weights, read_model_config
    return read_model_config(find_weights(path))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(path: str | Path | None = None, *, host: str = "127.0.0.1", port: int | None = None,
          api_key: str | list[str] | None = None, rate_limit: int = 0, max_request_bytes: int = 1 << 20,
          max_tokens_limit: int | None = None, cors_origins: list[str] | None = None,
          audit_db: str | Path | None = None, audit_hash_prompts: bool = False, sagemaker_mode: bool = False,
          model_name: str | None = None, device: str = "cpu", dtype: str | None = None, max_batch: int = 16,
          threads: int | None = 1, log_level: str = "info") -> None:
    """Run the server until interrupted (the `lmforge serve` verb).

    SageMaker mode defaults to /opt/ml/model on 0.0.0.0:8080 and needs no key for /invocations.
    threads: torch intra-op threads (1 measured fastest for small models on a 2-core CPU; None = torch default).
    """
    if sagemaker_mode:
        path = path or sagemaker.MODEL_DIR
        host = host if host != "127.0.0.1" else "0.0.0.0"
        port = port or sagemaker.PORT
    if path is None:
        raise UserError("serve needs a run directory or checkpoint directory")
    if not Path(path).exists():
        raise UserError(f"not found: {path}")
    keys = resolve_keys(api_key)
    if not keys and not is_loopback(host) and not sagemaker_mode:
        raise UserError(f"refusing to listen on {host} without an API key: pass --api-key or set LMFORGE_API_KEY")
    app = create_app(path, api_key=keys, model_name=model_name, rate_limit=rate_limit,
                     max_request_bytes=max_request_bytes, max_tokens_limit=max_tokens_limit,
                     cors_origins=cors_origins, audit_db=audit_db, audit_hash_prompts=audit_hash_prompts,
                     sagemaker_mode=sagemaker_mode,
                     engine_options={"device": device, "dtype": dtype, "max_batch": max_batch, "threads": threads})
    # The scheduler thread and the HTTP event loop share the GIL; a thread that wants it waits up
    # to the switch interval (5 ms by default, the length of a whole decode step here). 0.5 ms
    # measured 6% more aggregate tokens/s with 16 streaming clients (docs/experiments.md).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    uvicorn.run(app, host=host, port=port or 8000, log_level=log_level)
