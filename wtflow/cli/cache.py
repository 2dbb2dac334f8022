"""``wtflow cache``: list and prune the cache of finished nodes (:mod:`wtflow.cache`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from wtflow.cli.options import Duration, WtflowGroup
from wtflow.config import DEFAULT_CACHE_DIR
from wtflow.errors import BackendUnavailable

if TYPE_CHECKING:
    from wtflow.cache import CacheStore

    _IntType = click.ParamType[int]
else:  # not subscriptable at run time in every Click wtflow supports (8.1 on)
    _IntType = click.ParamType

F = TypeVar("F", bound=Callable[..., Any])


class ByteSizeType(_IntType):
    """A size in bytes >= 0, as pydantic's ``ByteSize`` reads it: ``1000000``, ``500MB``, ``2GiB``."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """``value`` in bytes; a usage error naming the option when it is no size."""
        if isinstance(value, int):
            return value
        from pydantic import ByteSize, TypeAdapter, ValidationError  # only when a size is given

        try:
            size = int(TypeAdapter(ByteSize).validate_python(value))
        except ValidationError:
            self.fail(f"{value!r} is not a size; write bytes (1000000) or e.g. 500MB, 2GiB", param, ctx)
        if size < 0:
            self.fail(f"{value!r} is not a size >= 0", param, ctx)
        return size


def _cache_dir_option(command: F) -> F:
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="WTFLOW_CACHE_DIR",
        show_envvar=True,
        default=None,
        help=f"The cache directory  [default: {DEFAULT_CACHE_DIR}]",
    )(command)


def _store(cache_dir: Path | None) -> CacheStore:
    from wtflow.cache import CacheStore

    return CacheStore(DEFAULT_CACHE_DIR if cache_dir is None else cache_dir)


def human_size(size: float) -> str:
    """``size`` bytes as people read it: ``512 B``, ``1.5 KiB``, ``2.0 GiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def human_age(seconds: float) -> str:
    """A time span, rounded down to its largest unit: ``45s``, ``12m``, ``3h``, ``5d``."""
    seconds = max(seconds, 0)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit}"
    return f"{int(seconds)}s"


def human_duration(seconds: float) -> str:
    """A node's duration, as ``wtflow runs`` shows it: ``12.3s``, ``2m03.4s``."""
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _show_warnings(store: CacheStore) -> None:
    for warning in store.warnings:
        click.echo(f"warning: {warning}", err=True)


def _unusable(store: CacheStore, exc: OSError) -> BackendUnavailable:
    return BackendUnavailable(f"the cache directory {store.root} cannot be used: {exc.strerror or exc}")


@click.group(cls=WtflowGroup)
def cache() -> None:
    """List and prune the cache of finished nodes."""


@cache.command("ls", epilog="\b\nExample:\n  wtflow cache ls --cache-dir ~/.cache/wtflow")
@_cache_dir_option
def cache_ls(cache_dir: Path | None) -> None:
    """List the cache's entries, newest first: node, size, age and the time each saves."""
    store = _store(cache_dir)
    try:
        found = sorted(store.entries(), key=lambda entry: entry.created, reverse=True)
    except OSError as exc:
        raise _unusable(store, exc) from None
    _show_warnings(store)
    if not found:
        click.echo(f"no cache entries in {store.root}")
        return
    now = datetime.now(UTC)
    _table(
        ["KEY", "NODE", "SIZE", "AGE", "SAVES"],
        [
            [
                entry.key[:12],
                entry.node,
                human_size(entry.size),
                human_age((now - entry.created).total_seconds()),
                human_duration(entry.duration),
            ]
            for entry in found
        ],
    )
    total = sum(entry.size for entry in found)
    click.echo(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}, {human_size(total)} in {store.root}")


@cache.command(
    "prune",
    epilog="Entries are removed when unused for longer than --older-than, then the least recently used "
    "until the cache holds at most --max-size. Without either, only damaged entries and leftovers of "
    "interrupted runs go.\n\n\b\nExample:\n  wtflow cache prune --max-size 2GiB --older-than 7d",
)
@_cache_dir_option
@click.option("--max-size", type=ByteSizeType(), help="Keep at most this much (e.g. 500MB, 2GiB).")
@click.option("--older-than", type=Duration(), help="Remove entries unused for longer than this (e.g. 12h, 7d).")
def cache_prune(cache_dir: Path | None, max_size: int | None, older_than: float | None) -> None:
    """Remove old entries, damaged entries and leftovers of interrupted runs from the cache."""
    store = _store(cache_dir)
    try:
        removed, freed = store.prune(max_size=max_size, older_than=older_than)
    except OSError as exc:
        raise _unusable(store, exc) from None
    _show_warnings(store)
    if not removed and not freed:
        click.echo(f"nothing to remove in {store.root}")
        return
    click.echo(f"removed {removed} entr{'y' if removed == 1 else 'ies'}, {human_size(freed)} freed in {store.root}")
