"""The labeling app's web server (FastAPI on uvicorn).

Security model:
* it binds to 127.0.0.1 by default; any other address requires an access token;
* with a token, every API call and image request must carry it (header, or for GET
  also the ``alkit_token`` cookie or ``?token=``); state-changing requests need the header;
* images are served only by their path inside the project folder, after refusing
  ``..``, absolute paths, backslashes, NUL bytes and anything that resolves (through
  symlinks) outside the folder, and only if the file is one of the project's images.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from alkit.app.project import LabelProject
from alkit.app.retrain import Retrainer
from alkit.data.images import image_info
from alkit.errors import DatasetError, LabelingError

TOKEN_HEADER = "x-alkit-token"
STATIC = resources.files("alkit.app") / "static"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MAX_BODY_BYTES = 64 * 1024  # the largest request body the API reads; its largest real request is ~2 kB
ImageId = Annotated[int, Field(ge=0, le=2**63 - 1)]  # SQLite's INTEGER range


class LeaseRequest(BaseModel):
    annotator: str = Field(min_length=1, max_length=100)
    n: int = Field(default=8, ge=1, le=100)
    refresh: bool = False
    keep: list[ImageId] = Field(default_factory=list, max_length=1000)


class LabelRequest(BaseModel):
    annotator: str = Field(min_length=1, max_length=100)
    image_id: ImageId
    label: str = Field(max_length=200)
    lease_id: str | None = Field(default=None, max_length=64)


class SkipRequest(BaseModel):
    annotator: str = Field(min_length=1, max_length=100)
    image_id: ImageId


class UndoRequest(BaseModel):
    annotator: str = Field(min_length=1, max_length=100)


def create_app(project: LabelProject, retrainer: Retrainer, token: str | None = None, lease_seconds: float = 300,
               budget: int | None = None) -> FastAPI:
    app = FastAPI(title="alkit label", docs_url=None, redoc_url=None, openapi_url=None)
    root = project.root.resolve()

    def _matches(candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), (token or "").encode())

    def header_tokens(request: Request) -> tuple[str | None, str | None]:
        """The token from our header and from an ``Authorization: Bearer`` header."""
        auth = request.headers.get("authorization", "")
        return request.headers.get(TOKEN_HEADER), (auth[7:] if auth.lower().startswith("bearer ") else None)

    def check_read(request: Request) -> None:
        if token is None:
            return
        for candidate in (*header_tokens(request), request.cookies.get("alkit_token"),
                          request.query_params.get("token")):
            if _matches(candidate):
                return
        raise HTTPException(401, "missing or wrong access token")

    def check_write(request: Request) -> None:
        if token is None:
            return
        if not any(_matches(candidate) for candidate in header_tokens(request)):
            raise HTTPException(401, f"state-changing requests need the access token in the {TOKEN_HEADER} header")

    @app.middleware("http")
    async def _cap_body(request: Request, call_next: Any) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        if declared is None and request.method in ("POST", "PUT", "PATCH"):
            return JSONResponse({"detail": "send a Content-Length header"}, status_code=411)
        return await call_next(request)

    @app.exception_handler(LabelingError)
    async def _labeling_error(_: Request, exc: LabelingError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        check_read(request)
        page = HTMLResponse((STATIC / "index.html").read_text())
        if token is not None:
            page.set_cookie("alkit_token", token, httponly=True, samesite="strict")
        return page

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        types = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in types:
            raise HTTPException(404)
        return PlainTextResponse((STATIC / name).read_text(), media_type=types[name])

    @app.get("/api/state", dependencies=[Depends(check_read)])
    def state() -> dict[str, Any]:
        models = project.models()
        labeled = project.current_labels()
        return {
            "classes": project.classes, "counts": project.counts(), "labeled": len(labeled),
            "images": project.n_images(), "budget": budget, "lease_seconds": lease_seconds,
            "model": {**retrainer.status(), "version": project.model_version(),
                      "latest": models[-1] if models else None,
                      "curve": [{"version": m["version"], "n_train": m["n_train"], **m["metrics"]} for m in models]},
            "queue_head": project.queue(10),
        }

    def _lease_readable(annotator: str, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _ in range(5):
            leases = project.lease(annotator, n, lease_seconds)
            bad = []
            for lease in leases:
                try:
                    image_info(project.root / lease.path)
                except DatasetError as exc:
                    project.mark_corrupt(lease.image_id, str(exc))
                    bad.append(lease)
            out = [{"image_id": l.image_id, "path": l.path, "url": f"/img/{l.path}", "lease_id": l.lease_id,
                    "expires": l.expires} for l in leases if l not in bad]
            if not bad:
                break
        return out

    @app.post("/api/lease", dependencies=[Depends(check_write)])
    def lease(req: LeaseRequest) -> dict[str, Any]:
        if req.refresh:
            project.release(req.annotator, req.keep)
        return {"items": _lease_readable(req.annotator, req.n), "model_version": project.model_version()}

    @app.post("/api/label", dependencies=[Depends(check_write)])
    def label(req: LabelRequest) -> dict[str, Any]:
        label_id = project.add_label(req.image_id, req.label, req.annotator, req.lease_id)
        retrainer.notify_labels()
        return {"ok": True, "label_id": label_id, "labeled": len(project.current_labels())}

    @app.post("/api/skip", dependencies=[Depends(check_write)])
    def skip(req: SkipRequest) -> dict[str, Any]:
        if project.image(req.image_id) is None:
            raise HTTPException(404, f"image id {req.image_id} is not in this project")
        project.skip(req.image_id, req.annotator)
        return {"ok": True}

    @app.post("/api/undo", dependencies=[Depends(check_write)])
    def undo(req: UndoRequest) -> dict[str, Any]:
        lease = project.undo(req.annotator, lease_seconds)
        if lease is None:
            return {"ok": False, "item": None}
        return {"ok": True, "item": {"image_id": lease.image_id, "path": lease.path, "url": f"/img/{lease.path}",
                                     "lease_id": lease.lease_id, "expires": lease.expires}}

    @app.post("/api/retrain", dependencies=[Depends(check_write)])
    def retrain() -> dict[str, Any]:
        if not retrainer.ready():
            raise HTTPException(409, f"need at least {retrainer.min_labels} training labels from 2 classes first")
        retrainer.request()
        return {"ok": True}

    @app.get("/api/export.csv", dependencies=[Depends(check_read)])
    def export_csv() -> Response:
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["file", "label", "annotator", "time", "model_version"], extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in project.label_rows() if not r["undone"])
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": "attachment; filename=labels.csv"})

    @app.get("/img/{rel:path}", dependencies=[Depends(check_read)])
    def image(rel: str) -> Response:
        path = safe_image_path(root, rel)
        info = project.image_by_path(Path(rel).as_posix())
        if info is None:
            raise HTTPException(404, "not an image of this project")
        return FileResponse(path)

    return app


def safe_image_path(root: Path, rel: str) -> Path:
    """Resolve ``rel`` inside ``root`` or raise 403: no traversal, absolute paths or escaping symlinks."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/") or Path(rel).is_absolute():
        raise HTTPException(403, "path refused")
    if any(part in ("..", "") for part in rel.split("/")) or "%" in rel:
        raise HTTPException(403, "path refused")
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise HTTPException(403 if not resolved.is_relative_to(root) else 404, "path refused")
    return resolved


def access_token(host: str, token: str | None) -> str | None:
    """The token to enforce: the given one; a new one when binding beyond loopback; else None."""
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(18)
