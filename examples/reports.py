"""A function the example workflows run as a node (see build.yml)."""

from wtflow import Artifact


def summarize(artifact: Artifact, limit: int) -> dict[str, object]:
    """Print the first lines of an upstream node's output; the return value becomes the result artifact."""
    lines = artifact.text().splitlines()
    for line in lines[:limit]:
        print(f"summary: {line}")
    return {"lines": len(lines), "first": lines[:limit]}
