"""The ``wtflow`` command line."""

from __future__ import annotations

import click

from wtflow import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wtflow")
def main() -> None:
    """Wtflow: run workflows of shell commands and Python functions."""
