"""The encrypted-inference service: FastAPI on 127.0.0.1, ciphertexts in, ciphertexts out.

Routes (every one needs ``Authorization: Bearer <token>``, compared in constant time):

- ``GET /v1/model``: the model's public spec (shapes, CKKS parameters, rotations, layout).
- ``POST /v1/context``: the client's public context bytes; returns its id. A context that
  carries a secret key, or too few levels for the model, is refused.
- ``POST /v1/infer`` with ``X-Veil-Context: <id>``: ciphertexts in, encrypted logits out.

Requests and replies carry ``X-Veil-MAC``: HMAC-SHA256 of the body under the token, so a
body altered on the way is refused with 400 (and the client refuses an altered reply).
Bodies above the size limit get 413 before they are read in full; malformed or mismatched
ciphertexts get 400 with the reason. The server never decrypts and has no route that takes
a decrypted result back.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from veil.core.errors import VeilError
from veil.core.net import ServiceProcess
from veil.encrypted.he.ckks import HEError, PublicContext
from veil.encrypted.he.inference import Client, EncryptedModel

CONTEXTS_KEPT = 4
DEFAULT_MAX_MB = 2048


def mac(token: str, body: bytes) -> str:
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def create_app(model: EncryptedModel, token: str, max_mb: int = DEFAULT_MAX_MB):
    """The FastAPI application serving ``model`` to holders of ``token``."""
    if len(token) < 16:
        raise VeilError("the service token must be at least 16 characters")
    app = FastAPI(title="veil encrypted inference", docs_url=None, redoc_url=None)
    contexts: OrderedDict[str, PublicContext] = OrderedDict()
    lock = threading.Lock()
    limit = max_mb * 2**20

    def authorise(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong token")

    async def body_of(request: Request) -> bytes:
        authorise(request)
        size = request.headers.get("content-length")
        if size is None or not size.isdigit() or int(size) > limit:
            raise HTTPException(413, f"body must declare its length, at most {max_mb} MiB")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPException(413, f"body over {max_mb} MiB")
        body = bytes(body)
        if not hmac.compare_digest(request.headers.get("x-veil-mac", ""), mac(token, body)):
            raise HTTPException(400, "body MAC does not match: altered on the way")
        return body

    def reply(data: bytes) -> Response:
        headers = {"X-Veil-MAC": mac(token, data)}
        return Response(data, media_type="application/octet-stream", headers=headers)

    def evaluate(ctx: PublicContext, body: bytes) -> bytes:
        with lock:  # SEAL objects and the plaintext cache are not shared across threads
            return model.evaluate(ctx, body)

    @app.get("/v1/model")
    def spec(request: Request) -> dict:
        authorise(request)
        return model.spec()

    @app.post("/v1/context")
    async def context(request: Request) -> dict:
        body = await body_of(request)
        try:
            ctx = model.check_context(PublicContext.from_bytes(body))
        except HEError as e:
            raise HTTPException(400, str(e)) from e
        key = ctx.digest()
        with lock:
            contexts[key] = ctx
            while len(contexts) > CONTEXTS_KEPT:
                contexts.popitem(last=False)
        return {"context": key, "levels": ctx.params.levels, "n": ctx.params.n}

    @app.post("/v1/infer")
    async def infer(request: Request) -> Response:
        body = await body_of(request)
        with lock:
            ctx = contexts.get(request.headers.get("x-veil-context", ""))
        if ctx is None:
            raise HTTPException(400, "unknown context: POST /v1/context first")
        try:
            return reply(await run_in_threadpool(evaluate, ctx, body))
        except HEError as e:
            raise HTTPException(400, str(e)) from e

    return app


class RemoteClient:
    """:class:`Client` talking to a running service over HTTP (httpx)."""

    def __init__(self, url: str, token: str, timeout: float = 600.0, packings=("batch", "vector")):
        import httpx

        self.token = token
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
        self.client = Client(self._json("GET", "/v1/model"), packings)
        self.context_id = self._json("POST", "/v1/context", self.client.public_bytes())["context"]

    def _send(self, method: str, path: str, body: bytes | None = None, headers=None):
        import httpx

        extra = dict(headers or {})
        if body is not None:
            extra["X-Veil-MAC"] = mac(self.token, body)
        try:
            response = self.http.request(method, path, content=body, headers=extra)
        except httpx.HTTPError as e:
            raise VeilError(f"cannot reach the HE service at {self.http.base_url}: {e}") from e
        if response.status_code != 200:
            detail = response.text[:300]
            raise VeilError(f"HE service refused {path} ({response.status_code}): {detail}")
        return response

    def _json(self, method: str, path: str, body: bytes | None = None) -> dict:
        return self._send(method, path, body).json()

    def infer(self, images: np.ndarray, packing: str = "auto") -> np.ndarray:
        """Encrypted logits for ``images``, decrypted here; the server sees neither."""
        request = self.client.encrypt(images, packing)
        response = self._send("POST", "/v1/infer", request, {"X-Veil-Context": self.context_id})
        given = response.headers.get("x-veil-mac", "")
        if not hmac.compare_digest(given, mac(self.token, response.content)):
            raise HEError("the service's reply failed its MAC: altered on the way")
        return self.client.decrypt(response.content)

    def close(self) -> None:
        self.http.close()


class Running(ServiceProcess):
    """``veil he serve MODEL`` as a child process on 127.0.0.1, stopped by PID on exit.

    Example::

        with Running(model_path, folder) as service:
            logits = service.client().infer(images)
    """

    def __init__(self, model_path, folder, port: int = 0, wait_s: float = 60.0):
        from pathlib import Path

        self.model_path, self.folder = Path(model_path), Path(folder)
        self.token_file = self.folder / "he-service.token"
        args = ["he", "serve", str(self.model_path), "--token-file", str(self.token_file)]
        super().__init__(args, "/v1/model", "HE service", wait_s, port)

    def __enter__(self) -> Running:
        self.folder.mkdir(parents=True, exist_ok=True)
        return super().__enter__()

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def client(self, packings=("batch", "vector")) -> RemoteClient:
        return RemoteClient(self.url, self.token(), packings=packings)
