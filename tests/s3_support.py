"""A real S3-compatible server on 127.0.0.1 for the object-storage tests (moto's server app behind
werkzeug, in a thread of the test process), the AWS environment pointing at it, a fresh bucket per
test, and small synthetic embedding sets to build versions from.

`S3Server.on_put` lets a test act the moment a given object has been stored (kill the uploader),
which is how a crash half-way through an upload is staged at a known point.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from index.synthetic import clustered_vectors, write_embedding_set

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """moto's S3 in a background thread; `on_put(predicate, action)` runs `action(path)` right after
    a PUT whose path matches has been stored (before its answer goes back)."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: object, **kwargs: object) -> None:
                pass

        self.hooks: list[tuple[Callable[[str], bool], Callable[[str], None]]] = []
        self.app = DomainDispatcherApplication(create_backend_app)
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=QuietHandler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _wsgi(self, environ: dict, start_response: Callable) -> object:
        result = self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "PUT":
            path = environ.get("PATH_INFO", "")
            for predicate, action in list(self.hooks):
                if predicate(path):
                    self.hooks.remove((predicate, action))
                    action(path)
        return result

    @contextlib.contextmanager
    def on_put(self, predicate: Callable[[str], bool], action: Callable[[str], None]) -> Iterator[None]:
        hook = (predicate, action)
        self.hooks.append(hook)
        try:
            yield
        finally:
            if hook in self.hooks:
                self.hooks.remove(hook)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**ENV, "AWS_ENDPOINT_URL": server.endpoint}.items():
            patch.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(key, raising=False)
        yield server
    server.stop()


@pytest.fixture
def s3_store(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://<a new bucket>/store`, with this test's own cache folder and working directory."""
    import fsspec

    bucket = f"recsys-{secrets.token_hex(4)}"
    fsspec.filesystem("s3").mkdir(bucket)
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return f"s3://{bucket}/store"


def make_set(path: Path, count: int = 300, seed: int = 1, images: str = "/images") -> Path:
    """A complete synthetic embedding set of `count` items (item0000...) with a category column;
    item ITEM's image reference is `{images}/ITEM.jpg`."""
    ids = [f"item{i:04d}" for i in range(count)]
    vectors = clustered_vectors(count, 32, latent=6, clusters=20, seed=seed)
    catalog = pd.DataFrame({"item_id": ids, "image": [f"{images}/{i}.jpg" for i in ids],
                            "category": [("a", "b", "c")[i % 3] for i in range(count)]})
    return write_embedding_set(path, ids, vectors, catalog)


def remote_text(url: str, name: str) -> str | None:
    """An object of the store as text (None when there is none), read with a fresh client."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    try:
        return fs.cat_file(f"{root}/{name}").decode()
    except FileNotFoundError:
        return None
