"""Functions the PyFunc benchmark (W4) runs."""


def noop(index: int) -> int:
    """Return at once."""
    return index
