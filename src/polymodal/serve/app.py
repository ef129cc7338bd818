"""HTTP API over a run folder: search, embed, health, thumbnails, and the static page.

Files are served only from the run's own data folder (the manifest's folder); any other path is
a 404. Uploads are size-limited and decoded with the same loaders as the batch jobs, so an
undecodable file is a 4xx with a message, never a crashed worker.
"""
from __future__ import annotations

import io
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from polymodal.errors import PolymodalError, UsageError

STATIC = Path(__file__).parent / "static"
IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_TYPES = {".wav", ".flac", ".ogg", ".mp3"}


def create_app(run_dir: str | Path, max_upload_mb: float = 10.0) -> Any:
    """Build the FastAPI app for a retrieval run (search / embed)."""
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile
    from fastapi.responses import FileResponse, HTMLResponse, Response
    from pydantic import BaseModel

    from polymodal.tasks.search import embed_query, load_run, search_run

    run = load_run(run_dir)
    data_root = run.manifest.root.resolve()
    lock = threading.Lock()
    limit = int(max_upload_mb * 1024 * 1024)
    app = FastAPI(title="polymodal", version="0.1.0",
                  description=f"Cross-modal search over {run.config.target} "
                              f"({len(run.index)} items) of run {Path(run_dir).name}")

    class TextQuery(BaseModel):
        text: str
        k: int = 10

    def _hits(hits) -> list[dict]:
        out = []
        for h in hits:
            d = h.to_dict()
            d["thumbnail"] = (f"/thumb/{h.row_id}" if h.path and Path(h.path).suffix.lower()
                              in IMAGE_TYPES else None)
            d["media"] = f"/media/{h.row_id}" if h.path else None
            d.pop("path", None)
            out.append(d)
        return out

    def _run_search(**query) -> dict:
        t0 = time.perf_counter()
        try:
            with lock:
                hits = search_run(run, **query)
        except UsageError as e:
            raise HTTPException(400, str(e)) from None
        except PolymodalError as e:
            raise HTTPException(422, str(e)) from None
        return {"hits": _hits(hits), "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}

    async def _save_upload(upload: UploadFile) -> tuple[Path, str]:
        suffix = Path(upload.filename or "").suffix.lower()
        if suffix in IMAGE_TYPES:
            modality = "image"
        elif suffix in AUDIO_TYPES:
            modality = "audio"
        else:
            raise HTTPException(415, f"unsupported file type '{suffix or '?'}'; upload an image "
                                f"({', '.join(sorted(IMAGE_TYPES))}) or audio "
                                f"({', '.join(sorted(AUDIO_TYPES))})")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"upload larger than {max_upload_mb:g} MB")
        if not data:
            raise HTTPException(400, "empty upload")
        tmp = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
        tmp.write(data)
        tmp.close()
        return Path(tmp.name), modality

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "task": "retrieval", "query": run.config.query,
                "target": run.config.target, "index_size": len(run.index)}

    @app.post("/search")
    def search_text(q: TextQuery) -> dict:
        """Search with a text query (JSON body ``{"text": …, "k": …}``)."""
        return _run_search(text=q.text, k=q.k)

    @app.post("/search/file")
    async def search_file(file: UploadFile = File(...), k: int = Form(10)) -> dict:
        """Search with an uploaded image or audio file."""
        path, modality = await _save_upload(file)
        try:
            return _run_search(**{modality: str(path)}, k=k)
        finally:
            path.unlink(missing_ok=True)

    @app.post("/embed")
    async def embed(text: str | None = Form(None), file: UploadFile | None = File(None)) -> dict:
        """Shared-space vector of a text (form field) or an uploaded file."""
        path = None
        try:
            if file is not None:
                path, modality = await _save_upload(file)
                item: Any = str(path)
            elif text:
                modality, item = "text", text
            else:
                raise HTTPException(400, "give a text field or a file")
            try:
                with lock:
                    v = embed_query(run, modality, item)[0]
            except UsageError as e:
                raise HTTPException(400, str(e)) from None
            except PolymodalError as e:
                raise HTTPException(422, str(e)) from None
            return {"modality": modality, "dim": len(v), "vector": [round(float(x), 6) for x in v]}
        finally:
            if path:
                path.unlink(missing_ok=True)

    def _record_path(row_id: str) -> Path:
        rec = next((r for r in run.manifest.records if r.id == row_id), None)
        item = rec.get(run.config.target) if rec else None
        if item is None or isinstance(item, list):
            raise HTTPException(404, "not found")
        p = Path(item).resolve()
        if not p.is_relative_to(data_root) or not p.is_file():
            raise HTTPException(404, "not found")
        return p

    @app.get("/thumb/{row_id:path}")
    def thumb(row_id: str) -> Response:
        from PIL import Image

        p = _record_path(row_id)
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                im.thumbnail((160, 160))
                buf = io.BytesIO()
                im.save(buf, format="PNG")
        except Exception:
            raise HTTPException(404, "not found") from None
        return Response(buf.getvalue(), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/media/{row_id:path}")
    def media(row_id: str) -> FileResponse:
        return FileResponse(_record_path(row_id))

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC / "index.html").read_text()

    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float = 10.0) -> None:
    """Run the app with uvicorn (blocking)."""
    import uvicorn

    uvicorn.run(create_app(run_dir, max_upload_mb), host=host, port=port, log_level="info")
