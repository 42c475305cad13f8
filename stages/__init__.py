"""Pipeline stages: one module per stage, run as `python -m stages.<name>`.

Each module parses its paths, loads its params section, calls the library (src/partseg) and
writes its outputs atomically. The Snakefile and dvc.yaml run the same commands.
"""

import importlib.util
import sys
from pathlib import Path

# Under `snakemake --use-conda` the package may not be installed: use this checkout's src/.
if importlib.util.find_spec("partseg") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
