"""The public API is exactly what ``wtflow.__all__`` lists, and every name is documented."""

from __future__ import annotations

import wtflow


def test_all_lists_every_public_member() -> None:
    public = {name for name in dir(wtflow) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(wtflow, name)).__name__ == "module"}
    assert public - modules == set(wtflow.__all__) - {"__version__"}


def test_every_exported_class_has_a_docstring() -> None:
    for name in wtflow.__all__:
        member = getattr(wtflow, name)
        if isinstance(member, type):
            assert member.__doc__, name
