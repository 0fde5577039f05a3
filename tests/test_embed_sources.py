"""Images over HTTP from a real server on 127.0.0.1: retries, timeouts, caps, hostile files."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from PIL import Image

from embeddings import images as images_module
from embeddings.embedding_set import read_embedding_set
from embeddings.errors import ImageError
from embeddings.images import read_image_bytes
from embeddings.runner import EmbedOptions, embed_catalog
from tests.imagegen import product_image


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    product_image(seed).save(buffer, format="JPEG")
    return buffer.getvalue()


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buffer, format="PNG")  # 900 megapixels in ~100 KB
    return buffer.getvalue()


BOMB = bomb_png()


class ImageServer(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    release = threading.Event()

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # the stdlib's method name
        hits = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path.startswith("/ok/"):
            self._send(200, jpeg(int(self.path.split("/")[-1].split(".")[0])))
        elif self.path == "/flaky.jpg" and hits == 1:
            self._send(503, b"busy")
        elif self.path == "/flaky.jpg":
            self._send(200, jpeg(99))
        elif self.path == "/slow.jpg":
            self.release.wait()  # answers only once the test is over: every read times out
            self._send(200, jpeg(98))
        elif self.path == "/bomb.png":
            self._send(200, BOMB)
        else:
            self._send(404, b"no such image")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:  # the client gave up (the timeout case)
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ImageServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    ImageServer.release.set()
    httpd.shutdown()


def test_http_catalog_with_retry_and_per_item_failures(server, tmp_path, lite0, monkeypatch) -> None:
    rows = [{"item_id": f"ok{i}", "image": f"{server}/ok/{i}.jpg"} for i in range(6)]
    rows += [
        {"item_id": "flaky", "image": f"{server}/flaky.jpg"},
        {"item_id": "missing", "image": f"{server}/missing.jpg"},
        {"item_id": "slow", "image": f"{server}/slow.jpg"},
        {"item_id": "bomb", "image": f"{server}/bomb.png"},
        {"item_id": "refused", "image": "http://127.0.0.1:9/nothing-listens.jpg"},
    ]
    options = EmbedOptions(batch_size=11, workers=0, progress=False, max_failure_rate=0.5, http_timeout=0.5)
    monkeypatch.setattr(images_module, "HTTP_BACKOFF_S", 0.01)
    report = embed_catalog(pd.DataFrame(rows), tmp_path / "set", lite0, options)
    assert report["counts"]["computed"] == 7
    assert ImageServer.hits["/flaky.jpg"] == 2  # a 503, then the retry succeeded
    failures = read_embedding_set(tmp_path / "set").failures().set_index("item_id")
    assert failures.loc["missing", "error_type"] == "http_error"
    assert "HTTP 404" in failures.loc["missing", "message"]
    assert ImageServer.hits["/missing.jpg"] == 1  # 404 is final: no retry
    assert failures.loc["slow", "error_type"] == "timeout"
    assert failures.loc["bomb", "error_type"] == "too_many_pixels"
    assert failures.loc["refused", "error_type"] == "connection_error"


def test_http_size_cap(server) -> None:
    with pytest.raises(ImageError) as info:
        read_image_bytes(f"{server}/ok/1.jpg", max_bytes=100)
    assert info.value.error_type == "too_large"
