"""`partseg annotate`: a local web page to paint part masks on the generated samples.

The server uses only the standard library (http.server) and binds 127.0.0.1. It serves the
page (static/) and a small JSON API over one annotation folder (see folder.py):

    GET  /api/classes                    {"classes": [...], "palette": [[r,g,b], ...], "ignore": 255}
    GET  /api/images                     {"images": [{stem, width, height, annotated, labelled,
                                          rank}], "annotated": n, "total": k (shots needed),
                                          "count": n images, "suggest": k, "folder": "..."}
    GET  /api/images/<stem>/image        the image as PNG (RGB, as the pipeline reads it)
    GET  /api/images/<stem>/mask         the mask as PNG (404 if not annotated yet);
                                         ?format=raw: width*height bytes, row-major;
                                         ?format=json: {"width", "height", "mask": [[...], ...]}
    PUT  /api/images/<stem>/mask         save a mask: a single-channel PNG (image/png), raw bytes
                                         (application/octet-stream) or JSON (application/json,
                                         {"mask": [[...], ...]}); answers the new progress

Errors answer 4xx with {"error": "<message>"}. Masks are saved atomically as the user works.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import threading
import urllib.parse
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from partseg.paint.folder import IGNORE, AnnotationFolder
from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import read_image
from partseg.visualize import palette

HOST = "127.0.0.1"
STATIC_FILES = {  # the only files served besides the API: name -> content type
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def class_palette(n: int) -> list[list[int]]:
    """n RGB colours, one per class: the project's palette, so the page matches its figures."""
    return np.asarray(palette(n), dtype=np.uint8).reshape(n, 3).tolist()


# ---------------------------------------------------------------------------------------------
# Request bodies -> masks


def mask_from_body(body: bytes, content_type: str, width: int, height: int,
                   name: str = "the image") -> np.ndarray:
    """Decode a PUT body (PNG, raw bytes or JSON) into an HxW uint8 mask; 400 if malformed.
    A PNG is checked against the image's size (`name`, width x height) before it is decoded."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "image/png":
        return _mask_from_png(body, width, height, name)
    if kind == "application/octet-stream":
        if len(body) != width * height:
            raise HttpError(HTTPStatus.BAD_REQUEST,
                            f"raw mask has {len(body)} bytes; the image is {width}x{height} "
                            f"= {width * height} pixels (one uint8 label id per pixel, row-major)")
        return np.frombuffer(body, dtype=np.uint8).reshape(height, width).copy()
    if kind == "application/json":
        return _mask_from_json(body)
    raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    f"Content-Type {kind or '(none)'}: send image/png, application/octet-stream "
                    f"or application/json")


def _mask_from_png(body: bytes, width: int, height: int, name: str) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(body))  # the header only: nothing decoded yet
    except Image.DecompressionBombError:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"mask PNG declares more pixels than any image partseg reads; "
                        f"send a {width}x{height} mask") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"mask body is not a readable PNG ({error})") from None
    if image.format != "PNG":
        raise HttpError(HTTPStatus.BAD_REQUEST, f"mask body is a {image.format} image, not a PNG")
    if image.size != (width, height):
        # Refused by its header: a small PNG can declare 12000x12000 pixels (a bomb).
        raise HttpError(HTTPStatus.UNPROCESSABLE_ENTITY,
                        f"mask is {image.size[0]}x{image.size[1]} but image {name} is "
                        f"{width}x{height}")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"mask body is not a readable PNG ({error})") from None
    if image.mode not in ("L", "P"):
        raise HttpError(HTTPStatus.BAD_REQUEST,
                        f"mask PNG must be single-channel label ids (mode L or P), "
                        f"found mode {image.mode}")
    return np.asarray(image, dtype=np.uint8)


def _mask_from_json(body: bytes) -> np.ndarray:
    try:
        rows = json.loads(body)["mask"]
        mask = np.asarray(rows)
    except RecursionError:  # e.g. [[[[...]]]] thousands deep
        raise HttpError(HTTPStatus.BAD_REQUEST,
                        'JSON mask is nested too deeply; send {"mask": [[id, ...], ...]}') from None
    except (ValueError, KeyError, TypeError) as error:
        raise HttpError(HTTPStatus.BAD_REQUEST,
                        f'JSON mask must be {{"mask": [[id, ...], ...]}} ({error})') from None
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise HttpError(HTTPStatus.BAD_REQUEST, "JSON mask must be a 2-D array of integer label ids")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        bad = int(mask.min() if mask.min() < 0 else mask.max())
        raise HttpError(HTTPStatus.UNPROCESSABLE_ENTITY,
                        f"label id {bad} is not a uint8 value (0..254 classes, 255 = ignore)")
    return mask.astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# HTTP


class AnnotateHandler(BaseHTTPRequestHandler):
    """Routes requests to the annotation folder; every failure answers JSON {"error": ...}."""

    server: "AnnotateServer"
    server_version = "partseg-annotate"

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_PUT(self) -> None:
        self._dispatch(self._put)

    def do_POST(self) -> None:
        self._dispatch(self._refuse_method)

    def do_DELETE(self) -> None:
        self._dispatch(self._refuse_method)

    def log_message(self, format: str, *args) -> None:
        pass  # the terminal shows saves (see _put), not every request

    # -- routing

    def _dispatch(self, route) -> None:
        try:
            self._check_host()
            path, query = self._split_target()
            route(path, query)
        except HttpError as error:
            self._send_json({"error": str(error)}, error.status)
        except PartsegError as error:
            self._send_json({"error": str(error)}, HTTPStatus.UNPROCESSABLE_ENTITY)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away; nothing to answer
        except OSError as error:  # e.g. disk full while saving: the page keeps the edit and retries
            self._send_json({"error": f"server could not read or write a file: {error}"},
                            HTTPStatus.INTERNAL_SERVER_ERROR)
        except Exception as error:  # a bug: still an answer (not a dropped connection), one line
            self.server.log(f"error: {self.command} {self.path}: {type(error).__name__}: {error}")
            self._send_json({"error": f"internal error ({type(error).__name__}); see the "
                                      "terminal running partseg annotate"},
                            HTTPStatus.INTERNAL_SERVER_ERROR)

    def _split_target(self) -> tuple[list[str], dict]:
        """Path segments (each percent-decoded after splitting, so %2F stays inside one) + query."""
        target, _, query = self.path.partition("?")
        target = target.partition("#")[0]
        if not target.startswith("/"):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"refused request target {self.path!r}")
        segments = [urllib.parse.unquote(s) for s in target.split("/")[1:]]
        return segments, urllib.parse.parse_qs(query)

    def _check_host(self) -> None:
        """Only answer requests addressed to this loopback server (blocks DNS rebinding)."""
        port = self.server.server_address[1]
        allowed = {f"{HOST}:{port}", f"localhost:{port}"}
        host = self.headers.get("Host")
        if host is not None and host not in allowed:
            raise HttpError(HTTPStatus.FORBIDDEN, f"refused Host {host!r}; open http://{HOST}:{port}/")

    def _get(self, path: list[str], query: dict) -> None:
        if path in ([""], ["index.html"]):
            return self._send_static("index.html")
        if len(path) == 2 and path[0] == "static":
            return self._send_static(path[1])
        if path == ["api", "classes"]:
            return self._send_json(self.server.classes_payload())
        if path == ["api", "images"]:
            return self._send_json(self.server.listing())
        if len(path) == 4 and path[:2] == ["api", "images"] and path[3] == "image":
            return self._send_image(self._stem(path[2]))
        if len(path) == 4 and path[:2] == ["api", "images"] and path[3] == "mask":
            return self._send_mask(self._stem(path[2]), query.get("format", ["png"])[0])
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such page or API: {self.path}")

    def _put(self, path: list[str], query: dict) -> None:
        if not (len(path) == 4 and path[:2] == ["api", "images"] and path[3] == "mask"):
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, "PUT is only for /api/images/<stem>/mask")
        self._check_origin()
        stem = self._stem(path[2])
        folder = self.server.folder
        width, height = folder.image_size(stem)
        body = self._read_body(limit=(1 << 20) + 16 * width * height)
        mask = mask_from_body(body, self.headers.get("Content-Type", ""), width, height, stem)
        kept = folder.save_mask(stem, mask)
        self.server.log(f"saved {folder.mask_path(stem)}" if kept else
                        f"removed {folder.mask_path(stem)} (no labelled pixel left)")
        self._send_json({"saved": kept, "image": folder.status(stem), **folder.progress()})

    def _refuse_method(self, path: list[str], query: dict) -> None:
        raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED,
                        f"{self.command} is not supported; masks are saved with PUT")

    # -- checks

    def _stem(self, stem: str) -> str:
        """A stem as requested must be a listed image; anything path-like is refused outright."""
        if not stem or stem.startswith(".") or any(c in stem for c in "/\\\0"):
            raise HttpError(HTTPStatus.BAD_REQUEST,
                            f"refused image name {stem!r}: only names of files in "
                            f"{self.server.folder.images_dir} can be used")
        if stem not in self.server.folder.image_files():
            raise HttpError(HTTPStatus.NOT_FOUND,
                            f"no image {stem!r} in {self.server.folder.images_dir}")
        return stem

    def _check_origin(self) -> None:
        """Writes come from our own page only (a web page elsewhere cannot overwrite masks)."""
        origin = self.headers.get("Origin")
        port = self.server.server_address[1]
        if origin is not None and origin not in (f"http://{HOST}:{port}", f"http://localhost:{port}"):
            raise HttpError(HTTPStatus.FORBIDDEN, f"refused write from origin {origin!r}")

    def _read_body(self, limit: int) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "a mask upload needs a Content-Length") from None
        if length < 0 or length > limit:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"mask upload of {length} bytes is larger than the {limit} allowed")
        return self.rfile.read(length)

    # -- answers

    def _send_static(self, name: str) -> None:
        if name not in STATIC_FILES:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no static file {name!r}")
        body = resources.files("partseg.paint").joinpath("static", name).read_bytes()
        self._send(body, STATIC_FILES[name])

    def _send_image(self, stem: str) -> None:
        image = read_image(self.server.folder.image_path(stem))
        self._send(png_bytes(image), "image/png")

    def _send_mask(self, stem: str, form: str) -> None:
        mask = self.server.folder.load_mask(stem)
        if mask is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"{stem} is not annotated yet (no mask file)")
        if form == "png":
            return self._send(png_bytes(mask), "image/png")
        if form == "raw":
            return self._send(mask.tobytes(), "application/octet-stream",
                              {"X-Mask-Width": str(mask.shape[1]), "X-Mask-Height": str(mask.shape[0])})
        if form == "json":
            return self._send_json({"width": mask.shape[1], "height": mask.shape[0],
                                    "mask": mask.tolist()})
        raise HttpError(HTTPStatus.BAD_REQUEST, f"format={form!r}: use png, raw or json")

    def _send_json(self, data, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(data).encode(), "application/json", status=status)

    def _send(self, body: bytes, content_type: str, headers: dict | None = None,
              status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # masks change while the page is open
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class AnnotateServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: AnnotationFolder, port: int, log=print):
        self.folder = folder
        self.log = log
        self.palette = class_palette(len(folder.classes))
        super().__init__((HOST, port), AnnotateHandler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def classes_payload(self) -> dict:
        return {"classes": self.folder.classes, "palette": self.palette, "ignore": IGNORE}

    def listing(self) -> dict:
        images = [self.folder.status(stem) for stem in self.folder.image_files()]
        # The stage's suggested order first (best candidate on top), then the rest by name.
        images.sort(key=lambda i: (i["rank"] is None, i["rank"] or 0))
        return {"images": images, **self.folder.progress(),
                "suggest": self.folder.candidates().get("k", 0), "folder": str(self.folder.root)}


def serve(directory: str | Path, port: int = 0, log=print) -> tuple[AnnotateServer, str]:
    """Serve `directory` on 127.0.0.1:`port` (0 = a free port) in a background thread.

    Returns (server, url); stop it with server.shutdown() then server.server_close().
    """
    folder = AnnotationFolder(directory)
    if not 0 <= port <= 65535:  # socket would raise OverflowError, not OSError
        raise PartsegError(f"--port {port}: a port is 0..65535 (0 = a free one)")
    try:
        server = AnnotateServer(folder, port, log=log)
    except OSError as error:
        raise PartsegError(f"--port {port}: cannot listen on {HOST}:{port} ({error})") from None
    # A short poll interval makes shutdown() quick (tests start and stop many servers).
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     name="partseg-annotate", daemon=True).start()
    return server, server.url


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="data/annotations",
                        help="annotation folder with images/, classes.yaml; masks/ is written "
                             "(default data/annotations, params key annotate.manual_dir)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0 = a free one)")
    parser.add_argument("--no-browser", action="store_true", help="only print the URL")


def open_browser(url: str) -> None:
    """Open the page in the desktop's browser; without a display, say how to reach it instead."""
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    # Without a display Python would start a text-mode browser (lynx, w3m) in this terminal.
    if headless or not webbrowser.open(url):
        port = url.rstrip("/").rsplit(":", 1)[1]
        print(f"no browser opened: on a remote machine, forward the port with "
              f"`ssh -L {port}:127.0.0.1:{port} <host>` and open {url} locally", flush=True)


def shots_needed(progress: dict) -> str:
    return f"{progress['total']} shot{'s' if progress['total'] != 1 else ''} needed"


def describe_progress(progress: dict) -> str:
    """"2 of 5 images annotated (1 shot needed)": images and shots counted apart (a person
    may paint more images than the k shots: "3 of 1 images" was printed before)."""
    return (f"{progress['annotated']} of {progress['count']} images annotated "
            f"({shots_needed(progress)})")


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # `kill` stops as cleanly as Ctrl+C


def run(args: argparse.Namespace) -> int:
    server, url = serve(args.dir, args.port)
    progress = server.folder.progress()
    print(f"annotating {progress['count']} images in {server.folder.root} "
          f"({progress['annotated']} annotated, {shots_needed(progress)}); masks are saved to "
          f"{server.folder.masks_dir}")
    print(f"open {url}  (Ctrl+C to stop)", flush=True)
    if not args.no_browser:
        open_browser(url)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        threading.Event().wait()  # the server runs in its thread until Ctrl+C
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    print(f"stopped: {describe_progress(server.folder.progress())} in "
          f"{server.folder.masks_dir}; rerun the pipeline to use them")
    return 0
