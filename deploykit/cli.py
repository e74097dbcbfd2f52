"""The ``deploykit`` command line: deploy, score, status, list, rollback, delete, serve, targets.

Exit codes: 0 success, 1 a deploykit failure (the message says what and how to fix it),
2 bad usage. ``--json`` prints one JSON object on stdout, also for failures
(``{"error": ..., "type": ...}``), so a CI step can act on it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from deploykit.errors import DeployKitError

__all__ = ["cli", "main"]


def _emit(obj: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(obj, default=str))
    else:
        human()


def _handle(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn DeployKitError into exit 1 with its message (or a JSON error object)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DeployKitError as exc:
            if kwargs.get("as_json"):
                click.echo(json.dumps({"error": str(exc), "type": type(exc).__name__}))
            else:
                click.echo(f"deploykit: error: {exc}", err=True)
            sys.exit(1)
    return wrapper


def _state_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--metadata", type=click.Path(dir_okay=False), default=None,
                        help="State file [default: ./metadata.yaml].")(func)
    func = click.option("--credentials", type=click.Path(dir_okay=False), default=None,
                        help="Credentials file [default: ./credentials.yaml if present, else DEPLOYKIT_<TARGET>_<KEY> env vars].")(func)
    return func


_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
_target_option = click.option("--target", "-t", default=None, help="Target, when NAME is deployed to several.")


def _describe(dep: Any) -> None:
    verb = {"created": "deployed", "updated": "updated", "unchanged": "unchanged (same model already serving)",
            "rolled-back": "rolled back", "deleted": "deleted"}.get(dep.action, dep.status)
    click.echo(f"{dep.name} on {dep.target}: {verb}; revision {dep.revision}, status {dep.status}"
               + (f", {dep.url}" if dep.url and dep.action != "deleted" else ""))


class _PluginCommands(click.Group):
    """The command group, completed on first use by every plugin's ``deploykit_register_commands``."""

    _loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            from deploykit.plugins import get_plugin_manager

            get_plugin_manager().hook.deploykit_register_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_PluginCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deploykit")
def cli() -> None:
    """Deploy a fitted model to any platform through one interface, and score it with any payload."""


@cli.command()
@click.argument("model")
@click.option("--target", "-t", default="local", show_default=True, help="Where to deploy ('deploykit targets' lists them).")
@click.option("--name", "-n", default=None, help="Deployment name [default: the model file name without suffix].")
@click.option("--schema", type=click.Path(dir_okay=False), default=None, help="schema.json with the input columns.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait until the deployment serves.")
@click.option("--force", is_flag=True, help="Deploy a new revision even if the same model already serves.")
@_state_options
@_json_option
@_handle
def deploy(model: str, target: str, name: str | None, schema: str | None, timeout: float, force: bool,
           credentials: str | None, metadata: str | None, as_json: bool) -> None:
    """Deploy MODEL (a joblib/pickle file, an MLflow model dir or models:/NAME@ALIAS): create, update, or no-op."""
    from deploykit.lifecycle import deploy as run

    dep = run(model, target=target, name=name, credentials=credentials, metadata=metadata, schema=schema,
              timeout=timeout, force=force)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    _emit(dep.summary(), as_json, lambda: _describe(dep))


@cli.command()
@click.argument("name")
@click.argument("data", required=False, default="-")
@_target_option
@_state_options
@_json_option
@_handle
def score(name: str, data: str, target: str | None, credentials: str | None, metadata: str | None, as_json: bool) -> None:
    """Score DATA (a JSON or CSV file, or - for stdin; any payload shape) on the deployment NAME."""
    from pathlib import Path

    from deploykit.errors import PayloadError
    from deploykit.lifecycle import score as run

    if data == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise PayloadError("no payload on stdin; pass a JSON or CSV file, or pipe one in")
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            try:
                parsed: Any = json.loads(text)
            except ValueError as exc:
                raise PayloadError(f"stdin is not valid JSON ({exc}); fix it or send CSV with a header") from None
        else:
            parsed = text
    else:
        parsed = Path(data)
        if parsed.suffix not in (".json", ".csv"):
            raise PayloadError(f"payload file {data!r} must end in .json or .csv so its format is known")
    predictions = run(name, parsed, target=target, credentials=credentials, metadata=metadata)

    def human() -> None:
        for row in predictions.to_records():
            probs = row.get("probabilities")
            extra = "  " + ", ".join(f"{k}: {v:.3f}" for k, v in probs.items()) if probs else ""
            click.echo(f"{row['prediction']}{extra}")

    _emit(predictions.to_dict(), as_json, human)


@cli.command()
@click.argument("name")
@_target_option
@_state_options
@_json_option
@_handle
def status(name: str, target: str | None, credentials: str | None, metadata: str | None, as_json: bool) -> None:
    """Show NAME's recorded deployment with its live status."""
    from deploykit.lifecycle import status as run

    dep = run(name, target=target, credentials=credentials, metadata=metadata)
    _emit(dep.summary(), as_json, lambda: _describe(dep))
    if dep.status != "ready":
        sys.exit(1)


@cli.command(name="list")
@click.option("--metadata", type=click.Path(dir_okay=False), default=None, help="State file [default: ./metadata.yaml].")
@_json_option
@_handle
def list_(metadata: str | None, as_json: bool) -> None:
    """List the deployments recorded in metadata.yaml."""
    from deploykit.lifecycle import list_deployments

    deps = list_deployments(metadata)

    def human() -> None:
        if not deps:
            click.echo("no deployments recorded")
        for d in deps:
            click.echo(f"{d.name}\t{d.target}\trevision {d.revision}\t{d.status}\t{d.url or ''}")

    _emit({"deployments": [d.summary() for d in deps]}, as_json, human)


@cli.command()
@click.argument("name")
@click.option("--to", "to", type=int, default=None, help="Revision to serve [default: the previous one].")
@click.option("--timeout", type=float, default=600, show_default=True)
@_target_option
@_state_options
@_json_option
@_handle
def rollback(name: str, to: int | None, timeout: float, target: str | None, credentials: str | None,
             metadata: str | None, as_json: bool) -> None:
    """Serve an earlier revision of NAME again."""
    from deploykit.lifecycle import rollback as run

    dep = run(name, to=to, target=target, credentials=credentials, metadata=metadata, timeout=timeout)
    _emit(dep.summary(), as_json, lambda: _describe(dep))


@cli.command()
@click.argument("name")
@_target_option
@_state_options
@_json_option
@_handle
def delete(name: str, target: str | None, credentials: str | None, metadata: str | None, as_json: bool) -> None:
    """Remove NAME from its target and from metadata.yaml."""
    from deploykit.lifecycle import delete as run

    dep = run(name, target=target, credentials=credentials, metadata=metadata)
    _emit(dep.summary(), as_json, lambda: _describe(dep))


@cli.command()
@_json_option
@_handle
def targets(as_json: bool) -> None:
    """List installed targets, and the pip line for those whose SDK is missing."""
    from deploykit.plugins import get_registry

    rows = [{"name": t.name, "available": not t.missing, "description": t.description,
             "install": None if not t.missing else t.install_hint} for t in get_registry()]

    def human() -> None:
        for r in rows:
            state = "ready" if r["available"] else f"missing SDK: {r['install']}"
            click.echo(f"{r['name']:<10} {state:<45} {r['description']}")

    _emit({"targets": rows}, as_json, human)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="deploykit")
