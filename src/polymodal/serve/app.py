"""HTTP API over a run folder (retrieval: search, embed, thumbnails, media; classification:
classify; caption: caption), health, offline API docs and the static page.

Only files that the run's manifest names are served (``/thumb/{id}``, ``/media/{id}`` look the
id up in the manifest; the id is never used as a path), so a traversal attempt is a plain 404,
and only when the file's real path (symlinks resolved) is a regular file inside one of the
manifest's media folders. Request bodies are counted while they stream in and cut with a 413
at the limit, hosts outside the allow-list get a 400 (`polymodal.serve.guards`); uploads are
decoded with the same loaders as the batch jobs, so an undecodable file is a 4xx with a
message, never a crashed worker; an unexpected error is a 500 with a request id only. Model
work runs in a worker thread behind a lock; the event loop keeps answering ``/health``
meanwhile. Concurrent searches are encoded in batches (`polymodal.serve.batching`).
"""
# No ``from __future__ import annotations`` here: FastAPI must see the request models defined
# inside create_app as real classes, not as strings it cannot resolve.
import io
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

from polymodal.core.errors import UsageError
from polymodal.serve.common import (AUDIO_TYPES, IMAGE_TYPES, Guard, k_value, media_roots,
                                    query_problem, query_text, run_kind, served_file,
                                    upload_modality)
from polymodal.serve.guards import allowed_hosts, install, validation_message

STATIC = Path(__file__).parent / "static"
# endpoint -> the run kind that has it; the others answer 400 with a message
ENDPOINTS = {"/search": "retrieval", "/search/file": "retrieval", "/embed": "retrieval",
             "/classify": "classification", "/caption": "caption"}
UPLOAD_PATHS = ("/search/file", "/embed", "/classify", "/caption")  # forms up to the upload limit
__all__ = ["AUDIO_TYPES", "IMAGE_TYPES", "create_app", "hit_dicts", "serve", "upload_modality"]


def hit_dicts(hits: list[Any], target: str) -> list[dict]:
    """JSON-ready hits: file paths replaced by ``/thumb`` and ``/media`` URLs."""
    out = []
    for h in hits:
        d = h.to_dict()
        path = d.pop("path", None)
        url_id = quote(h.row_id, safe="/")
        d["thumbnail"] = (f"/thumb/{url_id}" if path and target == "image" and
                          Path(path).suffix.lower() in IMAGE_TYPES else None)
        d["media"] = f"/media/{url_id}" if path else None
        d["modality"] = target
        out.append(d)
    return out


@lru_cache(maxsize=1024)
def _thumbnail_png(path: str, mtime: float, size: int = 160) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        im = im.convert("RGBA") if im.mode in ("P", "LA", "RGBA") else im.convert("RGB")
        im.thumbnail((size, size))
        if im.mode == "RGBA":  # transparent clip art: white background, as the encoder sees it
            bg = Image.new("RGB", im.size, "white")
            bg.paste(im, mask=im.getchannel("A"))
            im = bg
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return buf.getvalue()


def create_app(run_dir: str | Path, max_upload_mb: float = 10.0, preload: bool = False,
               max_batch: int = 64, allow_hosts: Iterable[str] = ()) -> Any:
    """Build the FastAPI app for a run folder. The run's kind (config.yaml ``task``) decides the
    endpoints: retrieval (``/search``, ``/search/file``, ``/embed``, ``/thumb``, ``/media``),
    classification (``/classify``) or caption (``/caption``); the other kinds' endpoints answer
    400 with a message. ``preload`` loads the encoders now instead of on the first request;
    ``max_batch``: most concurrent searches encoded together (1 turns batching off);
    ``allow_hosts``: ``Host`` names answered besides localhost, 127.0.0.1 and ::1 (``*``: any)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    from polymodal.tasks.api import load

    kind = run_kind(run_dir)
    guard = Guard(max_upload_mb)
    hosts = allowed_hosts(allow_hosts)
    if kind == "retrieval" and max_batch < 1:
        raise UsageError(f"max_batch must be >= 1, got {max_batch}")
    model = load(run_dir)  # the run's task object: all model work goes through it
    swagger = _local_swagger()
    app = FastAPI(title="polymodal", version="0.1.0", docs_url=None if swagger else "/docs")
    if swagger:
        _offline_docs(app, swagger)
    if kind == "retrieval":
        info = _retrieval_routes(app, guard, model, preload, max_batch)
    elif kind == "classification":
        from polymodal.serve.classify import classify_routes

        info = classify_routes(app, guard, model, preload)
    else:
        from polymodal.serve.caption import caption_routes

        info = caption_routes(app, guard, model, preload)
    app.description = str(info.pop("description"))
    install(app, guard, UPLOAD_PATHS, hosts)

    for path, needs in ENDPOINTS.items():
        if needs != kind:
            app.add_api_route(path, _wrong_kind(kind, needs, path), methods=["POST"],
                              include_in_schema=False)

    @app.get("/health")
    def health() -> dict:
        """Liveness plus what this run can do (``task``, its modalities, limits)."""
        return {"status": "ok", "task": kind, "run": Path(run_dir).name,
                "endpoints": sorted(p for p, k in ENDPOINTS.items() if k == kind),
                "max_upload_mb": max_upload_mb, **info}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        """The web page (one static file, no build step)."""
        return (STATIC / "index.html").read_text(encoding="utf-8")

    return app


def _local_swagger() -> Path | None:
    """Swagger UI files shipped by the ``fastapi-offline`` package (so /docs works offline), or
    None: FastAPI's default /docs then loads them from a CDN."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    path = Path(fastapi_offline.__file__).parent / "static"
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def _offline_docs(app: Any, swagger: Path) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-static", StaticFiles(directory=swagger), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Any:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="polymodal API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon.png")


def _wrong_kind(kind: str, needs: str, path: str) -> Callable:
    from fastapi.responses import JSONResponse

    made_by = {"retrieval": "fit retrieval", "classification": "fit classify",
               "caption": "fit caption"}[needs]

    async def handler() -> JSONResponse:
        return JSONResponse({"detail": f"this is a {kind} run, not a {needs} run: {path} needs "
                                       f"a run made by `polymodal {made_by}`"}, status_code=400)
    return handler


def _retrieval_routes(app: Any, guard: Guard, model: Any, preload: bool,
                      max_batch: int = 64) -> dict:
    """Search / embed / thumbnails / media for ``model`` (a `Retriever`); returns its /health
    facts."""
    from typing import Annotated

    from fastapi import File, Form, HTTPException, Request, UploadFile
    from fastapi.responses import FileResponse, Response
    from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError
    from starlette.concurrency import run_in_threadpool

    from polymodal.serve.batching import SearchBatcher

    cfg = model.config
    if preload:
        model.warm_up()

    n = len(model)
    Text = Annotated[str, AfterValidator(query_text)]
    K = Annotated[int, BeforeValidator(lambda v: k_value(v, n))]

    class TextQuery(BaseModel):
        text: Text
        k: K = min(10, n)

    class EmbedText(BaseModel):
        text: Text

    batcher = SearchBatcher(model, max_batch)
    app.state.guard, app.state.batcher = guard, batcher

    async def _batched(query: str, k: int, modality: str = "text", tmp: Path | None = None,
                       name: str = "") -> dict:
        """Queue a search, wait for its batch. ``latency_ms``: the request's time in the server
        (waiting for the model included); ``search_ms``: encoding + index search of its batch;
        ``batch``: how many queries shared that encoding."""
        t0 = time.perf_counter()
        try:
            item = batcher.submit(query, k, modality)
        except UsageError as e:
            raise HTTPException(400, str(e)) from None
        done = await run_in_threadpool(guard.run, lambda: batcher.result(item),
                                       {str(tmp): name} if tmp else None)
        return {"hits": hit_dicts(done.hits, cfg.target),
                "latency_ms": round((time.perf_counter() - t0) * 1000, 2),
                "search_ms": round(done.search_ms, 2), "batch": done.batch}

    @app.post("/search")
    async def search_text(q: TextQuery) -> dict:
        """Search with a text query (JSON body ``{"text": …, "k": …}``)."""
        return await _batched(q.text, q.k)

    @app.post("/search/file")
    async def search_file(file: UploadFile = File(...),
                          k: Annotated[K, Form()] = min(10, n)) -> dict:
        """Search with an uploaded image or audio file (multipart: ``file``, ``k``)."""
        path, modality = await guard.save(file)
        try:
            return await _batched(str(path), k, modality, path, file.filename or "upload")
        finally:
            path.unlink(missing_ok=True)

    async def _embed(modality: str, item: Any, tmp: Path | None = None, name: str = "") -> dict:
        v = await run_in_threadpool(guard.run, lambda: model.embed(item, modality),
                                    {str(tmp): name} if tmp else None)
        return {"modality": modality, "dim": len(v), "vector": [round(float(x), 6) for x in v]}

    @app.post("/embed")
    async def embed(request: Request) -> dict:
        """Shared-space vector of a text (JSON ``{"text": …}`` or form field ``text``) or of an
        uploaded file (multipart field ``file``)."""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = EmbedText.model_validate(await request.json())
            except ValidationError as e:
                raise HTTPException(422, validation_message(e.errors())) from None
            except Exception as e:
                raise HTTPException(422, f"expected JSON {{\"text\": …}} ({e})") from None
            return await _embed("text", body.text)
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception as e:
            raise HTTPException(400, f"cannot read the form ({e})") from None
        upload, text = form.get("file"), form.get("text")
        if upload is not None and not isinstance(upload, str):
            path, modality = await guard.save(upload)
            try:
                return await _embed(modality, str(path), path, upload.filename or "upload")
            finally:
                path.unlink(missing_ok=True)
        if isinstance(text, str) and text.strip():
            if query_problem(text):
                raise HTTPException(422, query_problem(text))
            return await _embed("text", text)
        raise HTTPException(400, "give a non-empty text (JSON or form field) or a file")

    roots: list[frozenset[Path]] = []  # the manifest's media folders, resolved (on first use)

    def _record_path(row_id: str) -> Path:
        """The real path of a row's file: only files the run's manifest names, and only when
        that real path is a regular file inside one of the manifest's media folders (a
        symlink out of them is a 404 like an unknown id)."""
        path = model.target_file(row_id)
        if path is not None and not roots:
            roots.append(media_roots(r.get(cfg.target) for r in model.by_id.values()))
        real = served_file(path, roots[0]) if path is not None else None
        if real is None:
            raise HTTPException(404, "not found")
        return real

    @app.get("/thumb/{row_id:path}")
    def thumb(row_id: str) -> Response:
        """A PNG thumbnail (at most 160 px) of an indexed image."""
        p = _record_path(row_id)
        if p.suffix.lower() not in IMAGE_TYPES:
            raise HTTPException(404, "not found")
        try:
            png = _thumbnail_png(str(p), p.stat().st_mtime)
        except Exception:
            raise HTTPException(404, "not found") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/media/{row_id:path}")
    def media(row_id: str) -> FileResponse:
        """The indexed file itself (image or audio)."""
        return FileResponse(_record_path(row_id))

    return {"description": f"Cross-modal search over {cfg.target} ({len(model)} items) "
                           f"of run {model.root.name}",
            "query": cfg.query, "target": cfg.target,
            "modalities": sorted(model.modalities), "index_size": len(model)}


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float = 10.0, max_batch: int = 64,
          allow_hosts: Iterable[str] = ()) -> None:
    """Run the app with uvicorn (blocking); encoders are loaded and warmed up before it
    listens. ``Host`` headers answered: localhost, 127.0.0.1, ::1, ``host`` and
    ``allow_hosts``."""
    import uvicorn

    app = create_app(run_dir, max_upload_mb, preload=True, max_batch=max_batch,
                     allow_hosts=[host, *allow_hosts])
    uvicorn.run(app, host=host, port=port, log_level="info")
