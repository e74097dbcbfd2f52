"""``deploykit serve``: the local server in the foreground, its options generated from ``LocalSettings``."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

import click

from deploykit_plugins.local.settings import LocalSettings

__all__ = ["serve_command"]

#: Settings that mean nothing in the foreground (the interpreter, and so the environment, is this one).
_NOT_OPTIONS = ("python", "env_cache")
#: Defaults that differ in the foreground: a fixed, well-known port.
_SERVE_DEFAULTS: dict[str, Any] = {"port": 8000}
_ENVVARS = {"token": "DEPLOYKIT_TOKEN"}


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """The click type of a settings field, and whether it is a bool flag."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union else [annotation]
    kind = args[0] if args else str
    if kind is bool:
        return bool, True
    if kind in (int, float):
        return kind, False
    return str, False


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one ``--option`` per ``LocalSettings`` field (its description is the help)."""
    for name, info in reversed(list(LocalSettings.model_fields.items())):
        if name in _NOT_OPTIONS:
            continue
        kind, flag = _click_type(info.annotation)
        default = _SERVE_DEFAULTS.get(name, info.default)
        flag_name = name.replace("_", "-")
        help_text = (info.description or "").rstrip(".") + "."
        if name in _ENVVARS:
            help_text += f" [env: {_ENVVARS[name]}]"
        if flag:
            decl = f"--{flag_name}/--no-{flag_name}"
            func = click.option(decl, name, default=default, help=help_text)(func)
        else:
            func = click.option(f"--{flag_name}", name, type=kind, default=default, envvar=_ENVVARS.get(name),
                                show_default=default is not None, help=help_text)(func)
    return func


@click.command("serve")
@click.argument("model")
@click.option("--schema", type=click.Path(dir_okay=False), default=None, help="schema.json with the input columns.")
@click.option("--name", default=None, help="Model name in /health and V2 routes [default: file name].")
@click.option("--trust", "trust", multiple=True, metavar="TYPE",
              help="A type a skops model file may hold that skops does not trust by default (repeatable).")
@settings_options
def serve_command(model: str, schema: str | None, name: str | None, trust: tuple[str, ...], **options: Any) -> None:
    """Serve MODEL in the foreground with the local target's server (Ctrl-C stops it)."""
    from pydantic import ValidationError

    from deploykit.artifact import load_artifact
    from deploykit.errors import DeployKitError
    from deploykit_plugins.local.app import ServerConfig
    from deploykit_plugins.local.server import serve
    from deploykit_plugins.local.sockets import bind

    try:
        settings = LocalSettings(**options)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"{problems}; see deploykit serve --help") from None
    try:
        artifact = load_artifact(model, schema, trusted_types=trust)
        try:
            public = bind(settings.host, settings.port, reuse_port=settings.workers > 1)
        except OSError as exc:
            raise DeployKitError(f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
                                 "pass --port with a free port") from None
    except DeployKitError as exc:
        click.echo(f"deploykit: error: {exc}", err=True)
        raise SystemExit(1) from None
    # A health socket lets the extra workers start (the first process keeps it).
    sockets = [public, bind("127.0.0.1", 0)] if settings.workers > 1 else [public]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    click.echo(f"serving {artifact.name} on {'https' if settings.certfile else 'http'}://{host}:"
               f"{public.getsockname()[1]} (docs at /docs)", err=True)
    serve(artifact, ServerConfig.from_settings(settings, name or artifact.name, 1), sockets,
          certfile=settings.certfile, keyfile=settings.keyfile or settings.certfile, workers=settings.workers)
