"""credentials.yaml: one section per target, ${ENV_VAR} interpolation, secrets kept secret.

    local:                       # works as is; every key optional
      port: 8080
      token: ${DEPLOYKIT_TOKEN}
    watsonml:
      url: https://us-south.ml.cloud.ibm.com
      apikey: ${IBM_CLOUD_API_KEY}
      space_id: 6f1e...

The flat legacy layout (``url``, ``apikey``, ``space_id`` at the top, as older Watson scripts
wrote it) is read as the ``watsonml`` section. In CI no file is needed: every key can come from
an environment variable ``DEPLOYKIT_<TARGET>_<KEY>`` (``DEPLOYKIT_WATSONML_APIKEY``), which
also overrides the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploykit.errors import CredentialsError
from deploykit.files import decode_utf8

__all__ = ["DEFAULT_PATH", "load_section", "validate_section"]

DEFAULT_PATH = Path("credentials.yaml")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_LEGACY_WATSON_KEYS = {"url", "apikey", "api_key", "space_id", "username", "password", "instance_id", "version"}


class _Unset:
    """A secret whose ``${VAR}`` is not set, in a section loaded with ``secrets_optional``."""


_UNSET = _Unset()


def _interpolate(value: Any, where: str, source: str, unset: list[str] | None = None) -> Any:
    if isinstance(value, dict):
        out = {k: _interpolate(v, f"{where}.{k}", source, unset if _is_secret(str(k)) else None)
               for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _UNSET}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if unset is not None:
        missing = [m.group(1) for m in _ENV_REF.finditer(value) if m.group(1) not in os.environ and m.group(2) is None]
        if missing:
            unset.append(where)
            return _UNSET

    def sub(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        raise CredentialsError(
            f"{source}: {where} refers to ${{{var}}}, but the environment variable {var} is not set; "
            f"export {var}=... or write the value (or ${{{var}:-default}}) in the file"
        )

    return _ENV_REF.sub(sub, value)


def _read_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CredentialsError(
            f"credentials file {str(path)!r} does not exist; copy credentials.example.yaml to it, "
            "or omit --credentials to use environment variables DEPLOYKIT_<TARGET>_<KEY>"
        ) from None
    except IsADirectoryError:
        raise CredentialsError(f"credentials file {str(path)!r} is a folder, not a file; give the path of the "
                               "credentials YAML file (e.g. credentials.yaml)") from None
    except OSError as exc:
        raise CredentialsError(
            f"credentials file {str(path)!r} cannot be read ({exc.strerror or exc}); check that it exists and "
            "that your user may read it (chmod u+r)"
        ) from None
    try:
        text = decode_utf8(raw)
    except ValueError as exc:
        raise CredentialsError(
            f"credentials file {str(path)!r} is not UTF-8: {exc} cannot be decoded; save the file as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.yaml)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CredentialsError(
            f"credentials file {str(path)!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}; fix the file"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CredentialsError(
            f"credentials file {str(path)!r} must be a mapping of target sections (local:, watsonml:, ...), "
            f"got a {type(data).__name__}"
        )
    return data


def load_section(target: str, path: str | Path | None = None, *, env: Mapping[str, str] | None = None,
                 secrets_optional: bool = False) -> dict[str, Any]:
    """The ``target`` section of the credentials, interpolated, with env overrides applied.

    ``path`` None means ``./credentials.yaml`` if it exists, else environment variables only.
    An explicit path that does not exist is an error. Two bookkeeping keys ride along for
    ``validate_section``: ``__source__`` (the file, for messages) and ``__folder__`` (its
    folder, which relative paths in the section are read from; the cwd without a file).

    ``secrets_optional`` (for commands that may not use every secret: ``status``, ``delete``):
    a secret key (token, key, password, secret) whose ``${VAR}`` is unset is left out instead of
    being an error, and listed under ``__unset__``; any other unset variable is still an error.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    source = "environment"
    folder = str(Path.cwd())
    data: dict[str, Any] = {}
    if path is not None or DEFAULT_PATH.is_file():
        file = Path(path) if path is not None else DEFAULT_PATH
        data = _read_file(file)
        source = str(file)
        folder = str(file.resolve().parent)
    section = data.get(target)
    if section is None and target == "watsonml" and _LEGACY_WATSON_KEYS & set(data):
        section = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise CredentialsError(f"{source}: section {target!r} must be a mapping of keys, got {section!r}")
    unset: list[str] | None = [] if secrets_optional else None
    section = dict(_interpolate(section, target, source, unset))
    prefix = f"DEPLOYKIT_{target.upper()}_"
    for var, value in environ.items():
        if var.startswith(prefix) and len(var) > len(prefix):
            section[var[len(prefix):].lower()] = value
    if unset:
        section["__unset__"] = unset
    section.setdefault("__source__", source)
    section.setdefault("__folder__", folder)
    return section


def validate_section(model: Any, section: dict[str, Any], target: str) -> Any:
    """Validate a section with the target's pydantic settings model; errors name the key and the fix.

    Relative paths are resolved against ``section['__folder__']`` (validation context ``base_dir``).
    """
    from pydantic import ValidationError

    source = section.get("__source__", "credentials")
    folder = section.get("__folder__") or str(Path.cwd())
    data = {k: v for k, v in section.items() if not (k.startswith("__") and k.endswith("__"))}
    try:
        return model.model_validate(data, context={"base_dir": folder})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(section)"
            if err["type"] == "missing":
                lines.append(f"'{key}' is missing (set {target}.{key} or DEPLOYKIT_{target.upper()}_{key.upper()})")
            elif err["type"] == "extra_forbidden":
                known = ", ".join(sorted(model.model_fields))
                lines.append(f"'{key}' is not a {target} setting (known: {known})")
            elif not err["loc"]:  # a check across keys: its input is the whole section, secrets included
                lines.append(err["msg"].removeprefix("Value error, "))
            else:
                seen = "<hidden>" if _is_secret(key) else repr(err.get("input"))
                lines.append(f"'{key}' = {seen}: {err['msg']}")
        raise CredentialsError(f"{source}: the {target} section is wrong: " + "; ".join(lines)) from None


def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in ("token", "key", "password", "secret"))
