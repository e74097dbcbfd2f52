"""The settings base every target's credentials section is validated with, and the types targets share.

A target's section is a subclass of ``TargetSettings``: unknown keys are refused, every field
carries a ``Field(description=...)``, and TLS is spelt one way on every target::

    mlflow:
      verify: true                  # true (default), false, or the path of a CA bundle (PEM)
      ca_bundle: certs/private-ca.pem   # trust a private CA; relative to the credentials file

``CertFile`` is the type for the certificate and key a server presents (``local.certfile``),
resolved the same way.

Relative paths are resolved against the folder of the credentials file they were read from
(``deploykit.credentials.validate_section`` passes it in as the ``base_dir`` validation
context; without one, the current folder). A subclass names its section in ``section`` and
may list ``deprecated_tls_keys``: older spellings of "skip verification" (``insecure_tls:
true``) that keep working, map onto ``verify: false`` and warn with a DeprecationWarning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

__all__ = ["MAX_RETRIES", "CABundle", "CertFile", "Retries", "TLSVerify", "TargetSettings", "parse_bool", "resolve_path"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
#: The most retries a setting accepts: more only hides an outage behind minutes of back-off.
MAX_RETRIES = 20


def parse_bool(value: Any) -> bool | None:
    """``value`` as a bool if it is one or a YAML/environment spelling of one (``"off"``, ``"1"``), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def resolve_path(value: str | Path, info: ValidationInfo | None = None) -> Path:
    """``value`` with ``~`` expanded, made absolute against the ``base_dir`` validation context (or the cwd)."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir") if info is not None else None
        path = Path(base or ".") / path
    return path.resolve()


def _existing_file(value: Any, info: ValidationInfo, what: str = "the CA bundle (PEM) that signed the "
                                                                  "server's certificate") -> str:
    path = resolve_path(value, info)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not an existing file; give the path of {what} (a relative path is "
                         "read from the credentials file's folder)")
    return str(path)


def _tls_verify(value: Any, info: ValidationInfo) -> Any:
    flag = parse_bool(value)
    if flag is not None:
        return flag
    if isinstance(value, (str, Path)) and str(value).strip():
        path = resolve_path(value, info)
        if path.exists():
            return str(path)
        raise ValueError("is neither true/false nor an existing file; give the path of the CA bundle (PEM) "
                         "that signed the server's certificate (a relative path is read from the credentials file's "
                         "folder), true, or false (not for production)")
    raise ValueError("must be true, false (not for production) or the path of a CA bundle (PEM)")


def _optional_file(what: str) -> Any:
    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, (str, Path)):
            return _existing_file(value, info, what)
        raise ValueError(f"must be the path of {what}")

    return check


#: TLS verification of a server: True (the system's trust store), False (no check), or a CA bundle path.
TLSVerify = Annotated[bool | str, BeforeValidator(_tls_verify)]
#: An existing CA bundle file (PEM), resolved to an absolute path.
CABundle = Annotated[str | None, BeforeValidator(_optional_file(
    "the CA bundle (PEM) that signed the server's certificate"))]
#: An existing certificate or key file (PEM) a server presents, resolved like ``CABundle``.
CertFile = Annotated[str | None, BeforeValidator(_optional_file("a certificate or key file (PEM)"))]
#: How many times a failed call is retried: 0 to ``MAX_RETRIES``.
Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES)]


class TargetSettings(BaseModel):
    """Base of a target's credentials section: unknown keys refused, TLS spelt ``verify`` + ``ca_bundle``."""

    model_config = ConfigDict(extra="forbid")

    #: The credentials section this model validates, for messages (``mlflow``).
    section: ClassVar[str] = "target"
    #: Older keys meaning "skip TLS verification when true", accepted and mapped onto ``verify: false``.
    deprecated_tls_keys: ClassVar[tuple[str, ...]] = ()

    verify: TLSVerify = Field(True, description="TLS check of the servers this target calls: true (system trust "
                                                "store), false (no check; not for production), or the path "
                                                "of a CA bundle (PEM)")
    ca_bundle: CABundle = Field(None, description="a CA bundle (PEM) to trust, e.g. a private CA; a relative path "
                                                  "is read from the credentials file's folder")

    @model_validator(mode="before")
    @classmethod
    def _deprecated_tls(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(key in data for key in cls.deprecated_tls_keys):
            return data
        data = dict(data)
        for key in cls.deprecated_tls_keys:
            if key not in data:
                continue
            value = data.pop(key)
            skip = parse_bool(value)
            if skip is None:
                raise ValueError(f"'{key}' = {value!r} is not true or false; write {cls.section}.verify: false "
                                 f"(or true) instead, {key} is deprecated")
            warnings.warn(f"{cls.section}.{key} is deprecated; write {cls.section}.verify: "
                          f"{'false' if skip else 'true'} instead", DeprecationWarning, stacklevel=2)
            if skip:
                if parse_bool(data.get("verify", False)) is not False:
                    raise ValueError(f"{cls.section}.{key}: true skips TLS verification, but {cls.section}.verify "
                                     f"= {data['verify']!r} asks for it; keep verify and remove {key}")
                data["verify"] = False
        return data

    @model_validator(mode="after")
    def _one_trust(self) -> TargetSettings:
        if self.ca_bundle is None:
            return self
        if self.verify is False:
            raise ValueError(f"{self.section}.verify = false turns the TLS check off, but {self.section}.ca_bundle "
                             f"= {self.ca_bundle!r} asks to check against that CA; remove one of them")
        if isinstance(self.verify, str) and self.verify != self.ca_bundle:
            raise ValueError(f"{self.section}.verify = {self.verify!r} and {self.section}.ca_bundle = "
                             f"{self.ca_bundle!r} name two CA bundles; keep ca_bundle and set verify: true")
        return self

    @property
    def tls_verify(self) -> bool | str:
        """What a client passes as ``verify``: False, a CA bundle path, or True."""
        if self.verify is False:
            return False
        return self.ca_bundle or self.verify
