"""`partseg annotate` server, without a browser: API, confinement to the folder, checks, saving."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import read_image, read_mask, save_png, save_yaml
from partseg.paint.folder import AnnotationFolder
from partseg.paint.server import serve
from partseg.visualize import palette

CLASSES = ["background", "body", "head"]
WIDTH, HEIGHT = 8, 6  # not square, so a transposed mask is caught


def make_folder(root: Path, stems=("s0", "s1", "s2")) -> Path:
    rng = np.random.default_rng(0)
    for stem in stems:
        save_png(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), root / "images" / f"{stem}.png")
    save_yaml(CLASSES, root / "classes.yaml")
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder(tmp_path / "annotations")


@pytest.fixture
def server(folder):
    server, _ = serve(folder, log=lambda message: None)
    yield server
    server.shutdown()
    server.server_close()


def call(server, method: str, target: str, body: bytes | None = None, headers: dict | None = None):
    """Send one raw request (the target is sent exactly as written) -> (status, headers, body)."""
    connection = http.client.HTTPConnection(*server.server_address, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=bool(headers and "Host" in headers))
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def put_mask(server, stem: str, body: bytes, content_type: str):
    return call(server, "PUT", f"/api/images/{stem}/mask", body, {"Content-Type": content_type})


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def example_mask() -> np.ndarray:
    mask = np.full((HEIGHT, WIDTH), 255, dtype=np.uint8)
    mask[1:3, 2:7] = 1
    mask[4, :] = 2
    mask[5, 0] = 0
    return mask


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]


# --------------------------------------------------------------------------- serving


def test_binds_loopback_on_a_free_port(server):
    host, port = server.server_address
    assert host == "127.0.0.1"
    assert port > 0
    assert server.url == f"http://127.0.0.1:{port}/"


def test_listing_reports_sizes_and_progress(server, folder):
    save_png(example_mask(), folder / "masks" / "s1.png")
    status, _, body = call(server, "GET", "/api/images")
    listing = json.loads(body)
    assert status == 200
    assert [image["stem"] for image in listing["images"]] == ["s0", "s1", "s2"]
    assert all((i["width"], i["height"]) == (WIDTH, HEIGHT) for i in listing["images"])
    assert [image["annotated"] for image in listing["images"]] == [False, True, False]
    assert listing["images"][1]["labelled"] == pytest.approx((example_mask() != 255).mean(), abs=1e-4)
    assert (listing["annotated"], listing["total"]) == (1, 3)


def test_listing_skips_leftover_partial_files(server, folder):
    save_png(np.zeros((HEIGHT, WIDTH, 3), np.uint8), folder / "images" / "s9.partial.png")
    listing = json.loads(call(server, "GET", "/api/images")[2])
    assert [image["stem"] for image in listing["images"]] == ["s0", "s1", "s2"]


def test_classes_come_with_the_project_palette(server):
    status, _, body = call(server, "GET", "/api/classes")
    data = json.loads(body)
    assert status == 200
    assert data["classes"] == CLASSES
    assert data["palette"] == palette(len(CLASSES)).tolist()
    assert data["ignore"] == 255


def test_image_is_served_as_the_pipeline_reads_it(server, folder):
    status, headers, body = call(server, "GET", "/api/images/s2/image")
    assert status == 200 and headers["Content-Type"] == "image/png"
    served = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    np.testing.assert_array_equal(served, read_image(folder / "images" / "s2.png"))


def test_page_and_its_static_files_are_served(server):
    status, headers, body = call(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/static/app.js" in body and b"/static/style.css" in body
    for name, kind in [("app.js", "text/javascript"), ("style.css", "text/css")]:
        status, headers, body = call(server, "GET", f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 100


def test_missing_mask_is_404_with_a_message(server):
    status, _, body = call(server, "GET", "/api/images/s0/mask")
    assert status == 404
    assert "not annotated" in error_of(body)


# --------------------------------------------------------------------------- saving


@pytest.mark.parametrize("encoding", ["raw", "png", "json"])
def test_saved_mask_round_trips(server, folder, encoding):
    mask = example_mask()
    body, kind = {
        "raw": (mask.tobytes(), "application/octet-stream"),
        "png": (png(mask), "image/png"),
        "json": (json.dumps({"mask": mask.tolist()}).encode(), "application/json"),
    }[encoding]
    status, _, answer = put_mask(server, "s0", body, kind)
    assert status == 200, answer
    result = json.loads(answer)
    assert result["saved"] is True
    assert (result["annotated"], result["total"]) == (1, 3)
    assert result["image"]["annotated"] is True
    np.testing.assert_array_equal(read_mask(folder / "masks" / "s0.png"), mask)

    status, headers, raw = call(server, "GET", "/api/images/s0/mask?format=raw")
    assert (headers["X-Mask-Width"], headers["X-Mask-Height"]) == (str(WIDTH), str(HEIGHT))
    np.testing.assert_array_equal(np.frombuffer(raw, np.uint8).reshape(HEIGHT, WIDTH), mask)
    listed = json.loads(call(server, "GET", "/api/images/s0/mask?format=json")[2])
    np.testing.assert_array_equal(np.array(listed["mask"]), mask)
    served = np.asarray(Image.open(io.BytesIO(call(server, "GET", "/api/images/s0/mask")[2])))
    np.testing.assert_array_equal(served, mask)


def test_save_replaces_the_file_and_leaves_no_temporary(server, folder):
    put_mask(server, "s0", example_mask().tobytes(), "application/octet-stream")
    second = np.zeros((HEIGHT, WIDTH), np.uint8)
    status, _, _ = put_mask(server, "s0", second.tobytes(), "application/octet-stream")
    assert status == 200
    assert sorted(os.listdir(folder / "masks")) == ["s0.png"]
    np.testing.assert_array_equal(read_mask(folder / "masks" / "s0.png"), second)


def test_failed_save_keeps_the_previous_mask(folder, monkeypatch):
    annotations = AnnotationFolder(folder)
    annotations.save_mask("s0", example_mask())

    def write_half_then_fail(image, target, *args, **kwargs):
        Path(target).write_bytes(b"\x89PNG half written")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        annotations.save_mask("s0", np.zeros((HEIGHT, WIDTH), np.uint8))
    monkeypatch.undo()
    assert sorted(os.listdir(folder / "masks")) == ["s0.png"]
    np.testing.assert_array_equal(read_mask(folder / "masks" / "s0.png"), example_mask())


def test_an_all_unlabelled_mask_removes_the_file(server, folder):
    put_mask(server, "s1", example_mask().tobytes(), "application/octet-stream")
    empty = np.full((HEIGHT, WIDTH), 255, np.uint8)
    status, _, body = put_mask(server, "s1", empty.tobytes(), "application/octet-stream")
    result = json.loads(body)
    assert status == 200 and result["saved"] is False
    assert (result["annotated"], result["total"]) == (0, 3)
    assert not (folder / "masks" / "s1.png").exists()


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("target, expected", [
    ("/api/images/..%2F..%2Fsecret/image", 400),
    ("/api/images/%2e%2e/mask", 400),
    ("/api/images/%2E%2E%2Fclasses/mask", 400),
    ("/api/images/..%5Cclasses/mask", 400),
    ("/api/images/%2Fetc%2Fpasswd/image", 400),
    ("/api/images/C:%5Csecret/image", 400),
    ("/api/images//etc/passwd/image", 404),
    ("/api/images/classes/image", 404),
    ("/../../secret.png", 404),
    ("/static/../folder.py", 404),
    ("/static/..%2Ffolder.py", 404),
    ("/static/__init__.py", 404),
    ("http://127.0.0.1/api/images", (400, 403)),  # absolute form (http.client adds Host without port)
])
def test_paths_outside_the_folder_are_refused(server, target, expected):
    status, _, body = call(server, "GET", target)
    assert status in (expected if isinstance(expected, tuple) else (expected,))
    assert error_of(body)  # a message, never file contents


def test_writes_outside_the_folder_are_refused(server, folder, tmp_path):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for target in ["/api/images/..%2F..%2Fsecret/mask", "/api/images/%2Ftmp%2Fx/mask",
                   "/api/images/..%2Fclasses/mask", "/api/images/new/mask"]:
        status, _, body = call(server, "PUT", target, example_mask().tobytes(),
                               {"Content-Type": "application/octet-stream"})
        assert status in (400, 404), target
        assert error_of(body)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("body, kind, status, message", [
    (np.zeros((HEIGHT, WIDTH + 1), np.uint8).tobytes(), "application/octet-stream", 400, "bytes"),
    (png(np.zeros((WIDTH, HEIGHT), np.uint8)), "image/png", 422, "mask is 6x8 but image s0 is 8x6"),
    (json.dumps({"mask": np.zeros((HEIGHT - 1, WIDTH), int).tolist()}).encode(), "application/json",
     422, "mask is 8x5"),
], ids=["raw", "png", "json"])
def test_a_mask_of_the_wrong_size_is_refused(server, folder, body, kind, status, message):
    answer_status, _, answer = put_mask(server, "s0", body, kind)
    assert answer_status == status
    assert message in error_of(answer)
    assert not (folder / "masks" / "s0.png").exists()


@pytest.mark.parametrize("bad_id", [3, 7, 254])
def test_a_label_outside_the_palette_is_refused(server, folder, bad_id):
    save_png(example_mask(), folder / "masks" / "s0.png")
    mask = example_mask()
    mask[0, 0] = bad_id
    status, _, body = put_mask(server, "s0", mask.tobytes(), "application/octet-stream")
    assert status == 422
    assert f"label id {bad_id} is outside the 3 classes" in error_of(body)
    np.testing.assert_array_equal(read_mask(folder / "masks" / "s0.png"), example_mask())


@pytest.mark.parametrize("value", [-1, 300])
def test_a_json_label_outside_uint8_is_refused(server, value):
    mask = example_mask().astype(int)
    mask[0, 0] = value
    status, _, body = put_mask(server, "s0", json.dumps({"mask": mask.tolist()}).encode(), "application/json")
    assert status == 422
    assert f"label id {value}" in error_of(body)


@pytest.mark.parametrize("body, kind, status, message", [
    (png(np.zeros((HEIGHT, WIDTH, 3), np.uint8)), "image/png", 400, "single-channel"),
    (b"not a png", "image/png", 400, "not a readable PNG"),
    (b"{\"pixels\": []}", "application/json", 400, '"mask"'),
    (b"x" * (WIDTH * HEIGHT), "text/plain", 415, "Content-Type"),
], ids=["rgb-png", "not-png", "json-without-mask", "text"])
def test_malformed_uploads_are_refused(server, folder, body, kind, status, message):
    answer_status, _, answer = put_mask(server, "s0", body, kind)
    assert answer_status == status
    assert message in error_of(answer)
    assert not (folder / "masks").exists() or not os.listdir(folder / "masks")


def test_an_oversized_upload_is_refused_before_reading(server):
    status, _, body = call(server, "PUT", "/api/images/s0/mask", None,
                           {"Content-Type": "application/octet-stream", "Content-Length": str(10**9)})
    assert status == 413
    assert "larger than" in error_of(body)


def test_other_methods_are_refused(server):
    status, _, body = call(server, "POST", "/api/images/s0/mask", b"", {"Content-Type": "image/png"})
    assert status == 405 and "PUT" in error_of(body)


def test_foreign_host_and_origin_are_refused(server, folder):
    port = server.server_address[1]
    status, _, body = call(server, "GET", "/api/images", headers={"Host": f"evil.example:{port}"})
    assert status == 403 and "Host" in error_of(body)
    status, _, body = call(server, "PUT", "/api/images/s0/mask", example_mask().tobytes(),
                           {"Content-Type": "application/octet-stream", "Origin": "http://evil.example"})
    assert status == 403 and "origin" in error_of(body)
    assert not (folder / "masks" / "s0.png").exists()


def test_a_saved_mask_that_does_not_fit_is_reported_not_served(server, folder):
    save_png(np.zeros((HEIGHT, WIDTH + 2), np.uint8), folder / "masks" / "s2.png")
    status, _, body = call(server, "GET", "/api/images/s2/mask?format=raw")
    assert status == 422
    assert "s2.png" in error_of(body) and "10x6" in error_of(body)


# --------------------------------------------------------------------------- start-up


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(PartsegError, match="nowhere/images: folder not found"):
        serve(tmp_path / "nowhere")


@pytest.mark.parametrize("text, message", [
    (None, "classes.yaml: not found"),
    ("{background: 0}", "must be a YAML list"),
    ("[a, a]", "duplicate class names"),
    ("[a, [b", "not valid YAML"),
])
def test_a_bad_classes_file_is_a_clear_error(folder, text, message):
    classes = folder / "classes.yaml"
    classes.unlink()
    if text is not None:
        classes.write_text(text)
    with pytest.raises(PartsegError, match=message):
        serve(folder)


def test_a_port_in_use_is_a_clear_error(server, folder):
    with pytest.raises(PartsegError, match=f"--port {server.server_address[1]}: cannot listen"):
        serve(folder, port=server.server_address[1])


def test_an_empty_images_folder_is_a_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    save_yaml(CLASSES, tmp_path / "classes.yaml")
    with pytest.raises(PartsegError, match="no .png/.jpg images"):
        serve(tmp_path)


def test_command_prints_the_url_serves_and_stops_on_ctrl_c(folder):
    # A person's shell delivers Ctrl-C to a command whose SIGINT is not ignored; an ignored
    # SIGINT is inherited (another test's subprocess tooling may leave pytest ignoring it),
    # and then Python installs no KeyboardInterrupt handler in the child. Restore the default.
    process = subprocess.Popen(
        [sys.executable, "-m", "partseg.cli", "annotate", "--dir", str(folder), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = process.stdout.readline()
        url_line = process.stdout.readline()
        assert "annotating 3 images" in first
        assert url_line.startswith("open http://127.0.0.1:")
        url = url_line.split()[1]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/images")
        assert json.loads(connection.getresponse().read())["total"] == 3
        connection.close()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped: 0 of 3 images annotated" in out


def test_listing_follows_the_stages_suggested_order(server, folder):
    (folder / "candidates.json").write_text(json.dumps({"k": 1, "order": ["s2", "s0"]}))
    listing = json.loads(call(server, "GET", "/api/images")[2])
    assert [image["stem"] for image in listing["images"]] == ["s2", "s0", "s1"]
    assert [image["rank"] for image in listing["images"]] == [1, 2, None]
    assert (listing["total"], listing["count"], listing["suggest"]) == (1, 3, 1)
