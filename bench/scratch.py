"""The scratch folder of a benchmark or of `make chaos`: each makes hundreds of MiB (stores, models, logits),
so it is removed when the script ends, unless QUANTSWEEP_KEEP_SCRATCH=1 keeps it to look into."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def folder(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("QUANTSWEEP_KEEP_SCRATCH") == "1":
        print(f"(kept: {path})", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
