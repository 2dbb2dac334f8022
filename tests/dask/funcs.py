"""Functions the Dask tests run on workers, each in its own process (importable by it through the runner's sys.path)."""

from __future__ import annotations

import time
from pathlib import Path

from wtflow import Artifact


def shout(text: Artifact) -> dict[str, str]:
    """Read another node's stdout (produced on another worker) and return it upper-cased."""
    value = text.text().strip().upper()
    print(f"read {value}")
    return {"shouted": value}


def wait_for_marker(path: str) -> str:
    """Print a line, then wait until the test has seen it and created ``path``."""
    print("waiting for the marker", flush=True)
    while not Path(path).exists():
        time.sleep(0.01)
    return "saw the marker"
