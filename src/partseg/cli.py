"""The `partseg` command: user tools beside the pipeline.

    partseg segment   images/folders/globs in, label and overlay PNGs out (auto-shot model)
    partseg export    a trained segmenter as an ONNX model (for ONNX Runtime and others)
    partseg annotate  a local web page to paint part masks on the generated samples
    partseg check     validate params.yaml and a folder dataset without running anything
    partseg convert   an NVlabs StyleGAN2 .pkl as a rosinality .pt (safe: no code from it runs)

Each subcommand lives in its own module, which provides `add_arguments(parser)` and
`run(args)`; they are imported only when used, so `partseg --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from partseg.plumbing.errors import exit_on_user_error

SUBCOMMANDS = {
    "segment": ("partseg.segment", "segment images with a trained auto-shot model"),
    "export": ("partseg.export", "export a trained segmenter to ONNX (runs without partseg)"),
    "annotate": ("partseg.paint.server", "paint part masks on the generated samples in a browser"),
    "check": ("partseg.plumbing.check", "validate params.yaml and the dataset folder"),
    "convert": ("partseg.convert", "NVlabs StyleGAN2 .pkl -> rosinality .pt (never runs its code)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="partseg", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module_name)
        # Only the chosen subcommand's module is imported (keeps start-up fast).
        if name in sys.argv[1:2]:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = build_parser().parse_args()
    return importlib.import_module(args.module).run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
