"""``deploykit batch SOURCE INPUT OUTPUT``: score a file, folder or glob into part files."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import click

__all__ = ["batch"]


def _terminal() -> Callable[[str], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(message: str) -> None:
        sys.stderr.write(f"\r\033[K{message}")
        sys.stderr.flush()

    return show


@click.command()
@click.argument("source")
@click.argument("input")
@click.argument("output")
@click.option("--engine", "-e", default="local", show_default=True,
              help="Where units run: local (this machine) or dask; plugins add others.")
@click.option("--keep", multiple=True, metavar="COL",
              help="Input column to copy into the output (repeat it) [default: every input column].")
@click.option("--on-error", type=click.Choice(["fail", "skip", "null"]), default="fail", show_default=True,
              help="A row that does not fit the model's schema: stop, leave it out, or write null predictions.")
@click.option("--format", "output_format", type=click.Choice(["parquet", "csv"]), default="parquet",
              show_default=True, help="Part file format.")
@click.option("--resume", is_flag=True, help="Finish an interrupted run: keep its complete parts, score the rest.")
@click.option("--overwrite", is_flag=True, help="Replace what OUTPUT holds.")
@click.option("--workers", "-w", type=int, default=None,
              help="Processes (local) or LocalCluster workers (dask) [default: local 1, dask one per core].")
@click.option("--address", default=None,
              help="Dask scheduler, e.g. tcp://10.0.0.5:8786 [default: DASK_SCHEDULER_ADDRESS, else a LocalCluster].")
@click.option("--target", "-t", default=None,
              help="With a deployment name as SOURCE: the target whose own batch jobs score it (watsonml).")
@click.option("--chunk-size", default="16MB", show_default=True, help="Input bytes per part file.")
@click.option("--metadata", type=click.Path(dir_okay=False), default=None, help="State file [default: ./metadata.yaml].")
@click.option("--credentials", type=click.Path(dir_okay=False), default=None,
              help="Credentials file [default: ./credentials.yaml if present, else environment variables].")
@click.option("--json", "as_json", is_flag=True, help="No progress; print the run's report as one JSON object.")
def batch(source: str, input: str, output: str, engine: str, keep: tuple[str, ...], on_error: str,
          output_format: str, resume: bool, overwrite: bool, workers: int | None, address: str | None,
          target: str | None, chunk_size: str, metadata: str | None, credentials: str | None, as_json: bool) -> None:
    """Score INPUT (CSV, Parquet or JSON Lines: a file, folder or glob, local or s3://) with SOURCE (a model
    file, an MLflow model, or a deployment name) into part files in the folder OUTPUT, plus _report.json."""
    from deploykit.batch import batch as run
    from deploykit.errors import DeployKitError

    started = time.monotonic()
    try:
        report = run(source, input, output, engine=engine, keep=list(keep) or None, on_error=on_error,
                     output_format=output_format, resume=resume, overwrite=overwrite, workers=workers,
                     address=address, target=target, credentials=credentials, metadata=metadata,
                     progress=None if as_json else _terminal(), chunk_size=chunk_size)
    except DeployKitError as exc:
        if sys.stderr.isatty() and not as_json:
            sys.stderr.write("\r\033[K")
        if as_json:
            click.echo(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        else:
            click.echo(f"deploykit: error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(report.summary(), default=str))
        return
    seconds = max(time.monotonic() - started, 1e-9)
    resumed = f", {report.parts_resumed} kept from the interrupted run" if report.parts_resumed else ""
    rejected = f", {report.rows_rejected:,} bad rows {'left out' if on_error == 'skip' else 'scored as null'}" \
        if report.rows_rejected else ""
    click.echo(f"scored {report.rows_in:,} rows into {len(report.parts)} part(s) in {output}{resumed}{rejected} "
               f"({seconds:.1f} s, {report.rows_in / seconds:,.0f} rows/s); report: {report.report}")


