"""The ``batch`` plugin: the ``local`` and ``dask`` batch engines and the ``deploykit batch`` command.

Engines register like targets (``deploykit_register_engines``), so Ray or Spark engines can be
added by any installed plugin; the command comes through ``deploykit_register_commands``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploykit.hookspecs import hookimpl

if TYPE_CHECKING:
    import click

    from deploykit.batch import EngineRegistry


@hookimpl
def deploykit_register_engines(registry: EngineRegistry) -> None:
    """Register the local streaming engine (extra ``batch``) and the Dask engine (extra ``dask``)."""
    registry.add("local", "deploykit_plugins.batch.local:LocalEngine", requires=("pyarrow", "fsspec"), extra="batch",
                 description="pyarrow streaming on this machine, --workers N processes (the default)")
    registry.add("dask", "deploykit_plugins.batch.dask_cluster:DaskEngine",
                 requires=("dask.dataframe", "distributed", "pyarrow", "fsspec"), extra="dask",
                 description="a Dask cluster: --address tcp://HOST:8786, else a LocalCluster on this machine")


@hookimpl
def deploykit_register_commands(cli: click.Group) -> None:
    """Add ``deploykit batch SOURCE INPUT OUTPUT``."""
    from deploykit_plugins.batch.cli import batch

    cli.add_command(batch)
