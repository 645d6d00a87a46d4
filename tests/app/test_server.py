import sqlite3
import threading

import httpx
import pytest

from tests.app.conftest import CLASSES


def _post(url: str, path: str, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"X-Alkit-Token": token} if token else {}
    return httpx.post(url + path, json=body, headers=headers, timeout=30)


def test_concurrent_annotators_get_disjoint_images(photos, server_factory) -> None:
    s = server_factory(photos[0])
    results: dict[str, list[int]] = {}

    def grab(name: str) -> None:
        ids: list[int] = []
        for _ in range(3):
            ids += [i["image_id"] for i in _post(s.url, "/api/lease", {"annotator": name, "n": 5}).json()["items"]]
        results[name] = ids

    threads = [threading.Thread(target=grab, args=(f"a{k}",)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_annotator = [set(v) for v in results.values()]
    assert len(results) == 8 and all(len(v) == 5 for v in per_annotator)  # repeated calls return one's own leases
    assert len(set().union(*per_annotator)) == 40  # no image is assigned to two annotators


def test_label_is_committed_before_ack_and_validated(photos, server_factory) -> None:
    s = server_factory(photos[0])
    item = _post(s.url, "/api/lease", {"annotator": "a", "n": 1}).json()["items"][0]
    r = _post(s.url, "/api/label", {"annotator": "a", "image_id": item["image_id"], "label": "coat"})
    assert r.status_code == 200 and r.json()["ok"]
    with sqlite3.connect(photos[0] / ".alkit-labels.sqlite") as con:  # a second reader sees it at once
        assert con.execute("SELECT label FROM labels WHERE image_id=?", (item["image_id"],)).fetchone() == ("coat",)
    bad = _post(s.url, "/api/label", {"annotator": "a", "image_id": item["image_id"], "label": "cow"})
    assert bad.status_code == 400 and "label 'cow' is not a class" in bad.json()["detail"]
    assert _post(s.url, "/api/label", {"annotator": "a", "image_id": 99999, "label": "coat"}).status_code == 400


@pytest.mark.parametrize("path, status", [
    ("/img/..%2F..%2F..%2Fetc%2Fpasswd", 403), ("/img/%2e%2e/%2e%2e/etc/passwd", 403),
    ("/img/%252e%252e/etc/passwd", 403), ("/img//etc/passwd", 403), ("/img/..%5c..%5cwindows", 403),
    ("/img/escape.png", 403), ("/img/img_0000.png%00.txt", 403), ("/img/notes.txt", 404),
])
def test_path_traversal_is_refused(shared_server, path: str, status: int) -> None:
    s = shared_server
    assert (s.root / "escape.png").is_symlink() and (s.root / "notes.txt").exists()
    r = httpx.get(s.url + path, timeout=10)
    assert r.status_code == status, r.text
    ok = httpx.get(s.url + "/img/img_0000.png", timeout=10)
    assert ok.status_code == 200 and ok.content[:4] == b"\x89PNG"


def test_token_required_for_every_api_and_image_request(photos, server_factory) -> None:
    s = server_factory(photos[0], "--token", "sesame")
    assert httpx.get(s.url + "/api/state").status_code == 401
    assert httpx.get(s.url + "/img/img_0000.png").status_code == 401
    assert httpx.get(s.url + "/").status_code == 401
    assert httpx.get(s.url + "/api/export.csv").status_code == 401
    assert httpx.get(s.url + "/api/state", headers={"X-Alkit-Token": "wrong"}).status_code == 401
    assert httpx.get(s.url + "/api/state", headers={"X-Alkit-Token": "sesame"}).status_code == 200
    assert httpx.get(s.url + "/img/img_0000.png?token=sesame").status_code == 200
    page = httpx.get(s.url + "/?token=sesame")
    assert page.status_code == 200 and "alkit_token" in page.headers["set-cookie"]
    assert _post(s.url, "/api/lease", {"annotator": "a"}).status_code == 401
    cookie_only = httpx.post(s.url + "/api/lease", json={"annotator": "a"}, cookies={"alkit_token": "sesame"})
    assert cookie_only.status_code == 401  # state changes need the header, not only the cookie
    assert httpx.get(s.url + "/api/state", cookies={"alkit_token": "sesame"}).status_code == 200
    assert _post(s.url, "/api/lease", {"annotator": "a"}, token="sesame").status_code == 200


def test_kill_9_loses_no_acknowledged_label_and_keeps_the_queue(photos, server_factory) -> None:
    root = photos[0]
    s = server_factory(root)
    items = _post(s.url, "/api/lease", {"annotator": "a", "n": 20}).json()["items"]
    acked = []
    for k, item in enumerate(items[:15]):
        r = _post(s.url, "/api/label", {"annotator": "a", "image_id": item["image_id"], "label": CLASSES[k % 10]})
        assert r.status_code == 200
        acked.append((item["image_id"], CLASSES[k % 10]))
    queue_before = httpx.get(s.url + "/api/state").json()["queue_head"]
    s.kill(9)
    s2 = server_factory(root, port=s.port)
    state = httpx.get(s2.url + "/api/state").json()
    assert state["labeled"] == 15 and state["queue_head"] == queue_before
    with sqlite3.connect(root / ".alkit-labels.sqlite") as con:
        stored = con.execute("SELECT image_id, label FROM labels ORDER BY id").fetchall()
    assert stored == acked
    again = _post(s2.url, "/api/lease", {"annotator": "a", "n": 5}).json()["items"]
    assert [i["image_id"] for i in again] == [i["image_id"] for i in items[15:20]]  # leases survive too


@pytest.mark.parametrize("path, body", [
    ("/api/label", {"annotator": "a", "image_id": 2**63, "label": "coat"}),
    ("/api/label", {"annotator": "a", "image_id": -1, "label": "coat"}),
    ("/api/skip", {"annotator": "a", "image_id": 2**64}),
    ("/api/lease", {"annotator": "a", "n": 2, "refresh": True, "keep": [2**63]}),
    ("/api/label", {"annotator": "a", "image_id": 1, "label": "coat", "lease_id": "x" * 1000}),
    ("/api/label", {"annotator": "a", "image_id": 1, "label": "c" * 5000}),
    ("/api/lease", {"annotator": "a" * 101}),
])
def test_out_of_range_ids_and_long_fields_get_422_not_500(shared_server, path: str, body: dict) -> None:
    s = shared_server
    r = _post(s.url, path, body)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()
    assert _post(s.url, "/api/lease", {"annotator": "a", "n": 1}).status_code == 200  # still serving


def test_request_bodies_are_capped(photos, server_factory) -> None:
    s = server_factory(photos[0])
    huge = httpx.post(s.url + "/api/label", content=b'{"annotator": "a", "image_id": 1, "label": "coat", '
                      b'"lease_id": "' + b"x" * (50 * 2**20) + b'"}', headers={"content-type": "application/json"},
                      timeout=60)
    assert huge.status_code == 413 and "over 65536 bytes" in huge.json()["detail"]
    with sqlite3.connect(photos[0] / ".alkit-labels.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM labels").fetchone() == (0,)


def test_an_image_whose_header_claims_a_huge_size_is_marked_corrupt_and_skipped(photos, server_factory) -> None:
    from tests.test_bad_inputs import _png_claiming

    root = photos[0]
    _png_claiming(root / "img_0000.png", 100_000, 100_000)
    s = server_factory(root)
    served = []
    for _ in range(5):
        r = _post(s.url, "/api/lease", {"annotator": "a", "n": 50})
        assert r.status_code == 200
        served += [i["path"] for i in r.json()["items"]]
        for item in r.json()["items"]:
            _post(s.url, "/api/skip", {"annotator": "a", "image_id": item["image_id"]})
    assert "img_0000.png" not in served and len(served) > 50
    with sqlite3.connect(root / ".alkit-labels.sqlite") as con:
        corrupt, error = con.execute("SELECT corrupt, error FROM images WHERE path='img_0000.png'").fetchone()
    assert corrupt == 1 and "over the limit" in error
