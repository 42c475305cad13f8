"""Manual annotation: `partseg annotate` serves a local page to paint part masks.

server.py  the HTTP server (standard library, 127.0.0.1 only), its JSON API and the CLI
folder.py  the annotation folder: listing, checks, atomic mask saves
static/    the page (plain HTML, CSS and JavaScript on a canvas)
"""

from partseg.annotate.folder import AnnotationFolder
from partseg.annotate.server import serve

__all__ = ["AnnotationFolder", "serve"]
