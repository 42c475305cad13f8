"""partseg.paint: the browser tool a person paints the shots' part masks with.

`partseg annotate` starts it (the command keeps the name of the pipeline stage it serves):

server.py  the HTTP server (standard library, 127.0.0.1 only), its JSON API and the CLI
folder.py  the annotation folder: listing, checks, atomic mask saves
static/    the page (plain HTML, CSS and JavaScript on a canvas)
"""

from partseg import lazy_exports

# name -> submodule; imported on first use (see partseg.lazy_exports)
_EXPORTS = {
    "AnnotationFolder": "folder",
    "serve": "server",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
