"""Every route of the HTTP API, in process (the app's own lifespan loads the real index)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from embeddings.embedding_set import read_embedding_set
from recsys.api import Settings, create_app

# The helpers double as a pytest plugin (below); mark them before importing them.
pytest.register_assert_rewrite("tests.api_support")
from tests.api_support import ADMIN_TOKEN, CATEGORIES, exact_neighbours, in_process_client  # noqa: E402

# Shared session fixtures (api_world, behaviour_store, api_server).
pytest_plugins = ["tests.api_support"]

SIMILAR = "/v1/items/{}/similar"


@pytest.fixture(scope="module")
def client(api_world):
    with in_process_client(api_world.store) as client:
        yield client


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"] == code
    return body


def test_health_and_readiness(client, api_world) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["version"] == api_world.version
    assert ready["items"] == 24
    assert ready["last_reload_failure"] is None


def test_similar_matches_exact_cosine_search(client, api_world) -> None:
    answer = client.get(SIMILAR.format("item0005"), params={"k": 5, "mode": "visual"}).json()
    assert answer["item_id"] == "item0005"
    assert answer["version"] == api_world.version
    assert answer["mode"] == "visual"
    ids = [r["item_id"] for r in answer["results"]]
    assert ids == exact_neighbours(api_world.embeddings, "item0005", 5)
    scores = [r["score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    data = read_embedding_set(api_world.embeddings)
    vectors = dict(zip(data.item_ids, data.vectors))
    for result in answer["results"]:
        cosine = float(vectors["item0005"] @ vectors[result["item_id"]])
        assert result["score"] == pytest.approx(cosine, abs=1e-3)
        # catalogue metadata rides along; the server-side image path does not
        assert result["category"] in CATEGORIES and result["title"].startswith("Product ")
        assert isinstance(result["in_stock"], bool)
        assert "image" not in result


def test_similar_filters_and_k(client, api_world) -> None:
    first = [r["item_id"] for r in client.get(SIMILAR.format("item0001"), params={"k": 4}).json()["results"]]
    answer = client.get(SIMILAR.format("item0001"), params={"k": 4, "exclude": ",".join(first[:2])}).json()
    ids = [r["item_id"] for r in answer["results"]]
    assert len(ids) == 4 and not set(first[:2]) & set(ids)
    assert ids[:2] == first[2:]
    bags = client.get(SIMILAR.format("item0001"), params={"k": 5, "category": "bags"}).json()["results"]
    assert len(bags) == 5 and {r["category"] for r in bags} == {"bags"}
    everything = client.get(SIMILAR.format("item0001"), params={"k": 1000}).json()["results"]
    assert len(everything) == 23  # every other item, never the query itself
    assert "item0001" not in {r["item_id"] for r in everything}


def test_hybrid_without_behaviour_data_says_so(client) -> None:
    answer = client.get(SIMILAR.format("item0002"), params={"mode": "hybrid", "k": 3}).json()
    visual = client.get(SIMILAR.format("item0002"), params={"mode": "visual", "k": 3}).json()
    assert answer["requested_mode"] == "hybrid"
    assert answer["mode"] == "visual" and "behaviour" in answer["note"]
    assert answer["results"] == visual["results"]


def test_similar_errors(client) -> None:
    assert_error(client.get(SIMILAR.format("nope")), 404, "unknown_item")
    for params, field in [({"k": 0}, "k"), ({"k": 1001}, "k"), ({"k": "ten"}, "k"), ({"mode": "x"}, "mode")]:
        body = assert_error(client.get(SIMILAR.format("item0001"), params=params), 422, "invalid_request")
        assert field in body["message"]
    assert_error(client.get("/v1/items/item0001/similar", params={"exclude": "x" * 20_001}), 422)


def test_item_listing_and_metadata(client) -> None:
    page = client.get("/v1/items", params={"offset": 3, "limit": 2}).json()
    assert page["total"] == 24 and page["offset"] == 3
    assert [i["item_id"] for i in page["items"]] == ["item0003", "item0004"]
    item = client.get("/v1/items/item0004").json()
    assert item == {"item_id": "item0004", "category": "bags", "title": "Product 4", "in_stock": False,
                    "price": 10.0}
    assert_error(client.get("/v1/items/missing"), 404, "unknown_item")
    assert_error(client.get("/v1/items", params={"limit": 0}), 422)


def test_batch_by_ids_and_vector(client, api_world) -> None:
    answer = client.post("/v1/similar", json={"item_ids": ["item0003", "ghost"], "k": 3, "mode": "visual"})
    assert answer.status_code == 200, answer.text
    first, ghost = answer.json()["queries"]
    assert [r["item_id"] for r in first["results"]] == exact_neighbours(api_world.embeddings, "item0003", 3)
    assert ghost == {"item_id": "ghost", "error": "unknown item_id", "results": []}
    data = read_embedding_set(api_world.embeddings)
    row = list(data.item_ids).index("item0007")
    by_vector = client.post("/v1/similar", json={"vector": (data.vectors[row] * 3).tolist(), "k": 2}).json()
    top = by_vector["queries"][0]["results"][0]
    assert top["item_id"] == "item0007" and top["score"] == pytest.approx(1.0, abs=1e-4)
    assert by_vector["mode"] == "visual"


@pytest.mark.parametrize("body", [
    {"k": 3},  # neither ids nor vector
    {"item_ids": ["item0001"], "vector": [0.1] * 1280},  # both
    {"item_ids": []},
    {"item_ids": ["a"] * 101},
    {"vector": [0.1, 0.2]},  # wrong dimension
    {"vector": [0.0] * 1280},  # no direction
    {"item_ids": ["item0001"], "k": 0},
    {"item_ids": ["item0001"], "colour": "red"},  # unknown field
])
def test_batch_rejects_bad_bodies(client, body) -> None:
    assert_error(client.post("/v1/similar", json=body), 422)


def test_batch_rejects_non_json_and_huge_bodies(client) -> None:
    json_type = {"content-type": "application/json"}
    assert_error(client.post("/v1/similar", content=b"{not json", headers=json_type), 422)
    huge = b'{"item_ids": ["' + b"x" * (1024 * 1024) + b'"]}'
    assert_error(client.post("/v1/similar", content=huge, headers=json_type), 413, "payload_too_large")


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def test_upload_finds_the_pictured_item(client, api_world) -> None:
    picture = Image.open(api_world.image_path("item0009")).convert("RGB").resize((200, 200))
    response = client.post("/v1/similar/image", params={"k": 3},
                           files={"file": ("query.jpg", _jpeg(picture), "image/jpeg")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["results"][0]["item_id"] == "item0009"
    assert answer["results"][0]["score"] > 0.9
    assert answer["mode"] == "visual" and len(answer["model_id"]) == 16


def test_upload_errors(client) -> None:
    def upload(name: str, data: bytes, kind: str = "image/jpeg"):
        return client.post("/v1/similar/image", files={"file": (name, data, kind)})

    body = assert_error(upload("x.jpg", b"not an image"), 422, "image_error")
    assert body["error_type"] == "decode_error"
    assert_error(upload("x.jpg", b""), 422)
    assert_error(client.post("/v1/similar/image"), 422)  # no file part
    over = b"\xff" * (10 * 1024 * 1024 + 1)
    assert_error(upload("big.jpg", over), 413, "payload_too_large")
    bomb = io.BytesIO()
    Image.new("L", (6000, 6000)).save(bomb, format="PNG")  # 36 Mpx in a few KiB
    body = assert_error(upload("b.png", bomb.getvalue(), "image/png"), 422, "image_error")
    assert body["error_type"] == "too_many_pixels"


def test_item_image_serves_catalogue_files_only(client, api_world) -> None:
    response = client.get("/v1/items/item0002/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == api_world.image_path("item0002").read_bytes()
    assert_error(client.get("/v1/items/nope/image"), 404)
    for sneaky in ["../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
                   "item0002/../../catalog.csv"]:
        response = client.get(f"/v1/items/{sneaky}/image")
        assert response.status_code == 404, sneaky
        assert response.headers["content-type"] == "application/json"
        assert b"root:" not in response.content and b"item_id,image" not in response.content


def test_user_recommendations_without_behaviour_data(client) -> None:
    assert_error(client.get("/v1/users/u1/recommendations"), 404, "no_behaviour")
    assert_error(client.get("/v1/users/u1/recommendations", params={"k": 0}), 422)


def test_admin_reload_needs_the_token(client, api_world) -> None:
    no_token = assert_error(client.post("/v1/admin/reload"), 401, "unauthorized")
    assert no_token["message"].startswith("admin routes need")
    assert client.post("/v1/admin/reload").headers["www-authenticate"] == "Bearer"
    assert_error(client.post("/v1/admin/reload", headers={"Authorization": "Basic abc"}), 401)
    assert_error(client.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong"}), 403, "forbidden")
    ok = client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"reloaded": True, "version": api_world.version, "previous": api_world.version}


def test_admin_is_off_without_a_configured_token(api_world) -> None:
    app = create_app(Settings(store=api_world.store, admin_token=None, reload_interval_s=0))
    with TestClient(app) as client:
        assert_error(client.post("/v1/admin/reload", headers={"Authorization": "Bearer anything"}), 403)


def test_metrics_count_routes_and_show_the_version(client, api_world) -> None:
    client.get(SIMILAR.format("item0001"))
    client.get(SIMILAR.format("ghost"))
    text = client.get("/metrics").text
    assert 'route="/v1/items/{item_id}/similar",status="200"' in text
    assert 'route="/v1/items/{item_id}/similar",status="404"' in text
    assert "recsys_http_request_duration_seconds_bucket" in text
    assert f'recsys_index_version_info{{version="{api_world.version}"}} 1.0' in text
    assert "recsys_index_items 24.0" in text
    assert 'recsys_reloads_total{result="failure"} 0.0' in text
    assert "ghost" not in text  # raw paths never become labels


def test_errors_are_json_and_cors_is_off_by_default(client, api_world) -> None:
    assert_error(client.get("/v2/nothing"), 404)
    assert_error(client.delete("/v1/similar"), 405)
    response = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    settings = Settings(store=api_world.store, reload_interval_s=0, cors_origins=("https://shop.example",))
    with TestClient(create_app(settings)) as cors_client:
        allowed = cors_client.get("/healthz", headers={"Origin": "https://shop.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"


def test_page_and_its_script_are_served(client) -> None:
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/static/ui.js">' in page.text
    script = client.get("/ui/static/ui.js")
    assert script.status_code == 200 and "/similar?k=" in script.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui"
    openapi = client.get("/openapi.json").json()
    assert {"/v1/items/{item_id}/similar", "/v1/similar", "/v1/similar/image", "/v1/admin/reload",
            "/v1/users/{user_id}/recommendations", "/v1/items/{item_id}/image"} <= set(openapi["paths"])


def test_vectors_are_unit_length(api_world) -> None:
    data = read_embedding_set(api_world.embeddings)
    np.testing.assert_allclose(np.linalg.norm(data.vectors, axis=1), 1.0, atol=1e-4)


def test_fast_path_answers_exactly_like_the_route(client, api_world) -> None:
    # A plain GET similar is answered before routing; the same app without the fast path sends
    # it through FastAPI's route. Both must give the same bytes (tests/test_api_fastpath.py: the
    # shop-grade parameters and sessions).
    queries = [{}, {"k": "7"}, {"k": "3", "mode": "visual"}, {"mode": "hybrid"}]
    with in_process_client(api_world.store, fast_path=False) as reference:
        routed_answers = [reference.get(SIMILAR.format("item0006"), params=params) for params in queries]
    for params, routed in zip(queries, routed_answers):
        fast = client.get(SIMILAR.format("item0006"), params=params)
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.content
        assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    # what the fast path declines still gets the route's validation
    assert_error(client.get(SIMILAR.format("item0006"), params={"k": "0"}), 422)
    assert_error(client.get(SIMILAR.format("item0006"), params={"k": "99999"}), 422)
    assert_error(client.get(SIMILAR.format("x" * 513)), 422)


def test_remote_images_redirect_and_unknown_models_refuse_uploads(tmp_path) -> None:
    from index.build import build_version
    from index.synthetic import clustered_vectors, write_embedding_set

    ids = [f"r{i}" for i in range(30)]
    catalog = pd.DataFrame({"item_id": ids, "image": [f"https://images.example/{i}.jpg" for i in ids]})
    write_embedding_set(tmp_path / "emb", ids, clustered_vectors(30, 16), catalog)
    build_version(tmp_path / "emb", tmp_path / "store")
    with TestClient(create_app(Settings(store=tmp_path / "store", reload_interval_s=0))) as client:
        # the browser follows the catalogue's URL; the server itself fetches nothing
        response = client.get("/v1/items/r3/image", follow_redirects=False)
        assert response.status_code == 307
        assert response.headers["location"] == "https://images.example/r3.jpg"
        # the version was made by a model this server cannot load: a clear 503, not a crash
        picture = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 30, 30)).save(picture, format="PNG")
        body = assert_error(client.post("/v1/similar/image", files={"file": ("p.png", picture.getvalue())}),
                            503, "no_model")
        assert "synthetic" in body["message"]


def test_serve_command_refuses_a_missing_store(tmp_path, capsys) -> None:
    from jobs.cli import main

    assert main(["serve", "--store", str(tmp_path / "missing")]) == 2
    assert "--store" in capsys.readouterr().err
