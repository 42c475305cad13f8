"""partseg: few-shot semantic part segmentation with GAN representations.

The library behind the pipeline: data/ (datasets and formats), gan/ (StyleGAN2),
features/ (pixel representations cached on disk), inversion, fewshot/, autoshot/,
metrics, report and cli (user commands).
"""

__version__ = "0.1.0"


def lazy_exports(package: str, exports: dict[str, str]):
    """A package's module `__getattr__` that imports an exported name's submodule on first use.

    Packages list their public names as `_EXPORTS = {name: submodule}` instead of importing
    every submodule up front: `from partseg.gan import load_generator` then runs only
    gan/checkpoint.py and what it imports, so a pipeline stage's code dependencies
    (partseg.plumbing.code_deps, which reads the same table) are exactly the code it runs.
    """
    import importlib

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
