"""Pipeline stages: one module per stage, run as `python -m stages.<name>`.

Each module parses its paths, loads its params section, calls the library (src/partseg) and
writes its outputs atomically. The Snakefile and dvc.yaml run the same commands.
"""

import sys
from pathlib import Path

# A stage runs the library of the checkout it belongs to, whatever partseg is installed (or
# none, under `snakemake --use-conda`): that is the code its cache tracks (partseg.plumbing.code_deps).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
