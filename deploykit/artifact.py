"""The thing deployed: a loaded model plus its facts (sha256, framework, schema, example row).

Sources other than a model file (an MLflow model folder, ``models:/`` URIs, ...) are loaded by
plugins through the ``deploykit_load_artifact`` hook; the first plugin that answers wins, and a
model file is the default when none does: a joblib/pickle file, or a ``skops`` file.

Loading a joblib/pickle file runs whatever code the file names: load only files you made or
trust. A ``skops`` file (``skops.io.dump``; a zip) is the safe alternative: it names the types it
holds, and ``load_artifact`` refuses one that holds a type skops does not trust by default
unless the caller lists it in ``trusted_types`` (``deploykit deploy --trust TYPE``). The check
reads only the file's type list, so it happens at once, also for a deferred artifact.

A pickle file can be opened *deferred* (``load_artifact(path, defer=True)``): it is hashed and
its schema sidecar read at once, but the model is unpickled (and scikit-learn imported) only
when ``model``, ``framework``, ``classes``... are first used, or ``load()`` is called. The
deploy flow uses that to compare hashes before paying for the model.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import ArtifactError
from deploykit.schema import Column, Schema

if TYPE_CHECKING:
    from deploykit.bundle import Script

__all__ = ["Artifact", "is_skops_file", "load_artifact", "sha256_of", "skops_trusted_types", "skops_untrusted_types"]

_LOADERS_HINT = ("a joblib/pickle file of a fitted model (e.g. model.joblib), a skops file (model.skops) "
                 "or an MLflow model directory")


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, or of every file (names and bytes, sorted) below a directory."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        if path.is_dir():
            digest.update(str(item.relative_to(path)).encode() + b"\0")
        with item.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Artifact:
    """A fitted model ready to deploy.

    ``framework`` is the distribution the model comes from (``scikit-learn``, ``xgboost``, ...)
    and ``framework_version`` its installed version; targets map them to their own model types
    (Watson: ``scikit-learn_1.x``). ``schema`` is the input schema, ``source`` where it came from.
    """

    path: Path
    sha256: str
    model: Any
    framework: str
    framework_version: str | None
    schema: Schema
    flavor: str = "joblib"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt attribute stays a type error
        def __getattr__(self, attr: str) -> Any:
            # Only reached for attributes not set yet: the facts of a deferred artifact.
            if attr in _DEFERRED and "_pending" in self.__dict__:
                self.load()
                return self.__dict__[attr]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    @property
    def loaded(self) -> bool:
        """False while the model of a deferred artifact has not been unpickled yet."""
        return "_pending" not in self.__dict__

    def load(self) -> Artifact:
        """Unpickle a deferred artifact's model now (once; later calls return at once) and return self.

        Raises the ArtifactError an eager ``load_artifact`` would have raised (not a pickle, no
        ``predict()``, a package missing), every time it is called.
        """
        pending = self.__dict__.get("_pending")
        if pending is None:
            return self
        with pending.lock:
            if "_pending" in self.__dict__:
                if pending.error is None:
                    try:
                        self.__dict__.update(pending.facts())
                    except ArtifactError as exc:
                        pending.error = exc
                if pending.error is not None:
                    raise pending.error
                del self.__dict__["_pending"]
        return self

    @property
    def name(self) -> str:
        """A default deployment name: the file name without its suffix (``bank-model.joblib`` -> ``bank-model``);
        a bundle's ``name``, else its script's file name (``app.py:score`` -> ``app``)."""
        if self.flavor == "script" and self.extra.get("bundle_name"):
            return str(self.extra["bundle_name"])
        return self.path.name.split(".")[0] if self.path.is_file() else self.path.name

    @property
    def example(self) -> dict[str, Any]:
        """One input row (column -> value) used for docs and the smoke test."""
        return self.schema.example

    @property
    def classes(self) -> list[Any] | None:
        """Class labels of a classifier, in predict_proba's column order."""
        classes = getattr(self.model, "classes_", None)
        if classes is None:
            return None
        from deploykit.payload import jsonable

        return jsonable(list(classes))  # type: ignore[no-any-return]

    def predict(self, frame: Any) -> Any:
        """Score a validated DataFrame in process (labels and probabilities in one model pass
        where the model allows it); returns Predictions."""
        from deploykit.inference import ModelScorer

        return ModelScorer(self)(frame, want_proba=True)


#: Facts of a deferred artifact that need the unpickled model (``flavor`` reads ``"joblib"`` or ``"skops"`` until then,
#: ``source`` is known at once).
_DEFERRED = frozenset({"model", "framework", "framework_version", "schema"})


class _Pending:
    """What a deferred artifact still has to do: unpickle its model, and infer its schema if no sidecar gave one."""

    def __init__(self, path: Path, text: str, schema: tuple[Schema, str] | None, trusted: list[str]) -> None:
        self.path = path
        self.text = text
        self.schema = schema
        self.trusted = trusted
        self.lock = threading.Lock()  # a target may read the model from several threads
        self.error: ArtifactError | None = None

    def facts(self) -> dict[str, Any]:
        model, flavor = _load_model(self.path, self.text, self.trusted)
        framework, version = _framework_of(model)
        resolved, origin = self.schema if self.schema is not None else (infer_schema(model), _INFERRED)
        return {"model": model, "flavor": flavor, "framework": framework, "framework_version": version,
                "schema": resolved, "source": origin}


def _framework_of(model: Any) -> tuple[str, str | None]:
    top = type(model).__module__.split(".")[0]
    dist = {"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm",
            "catboost": "catboost"}.get(top, top)
    try:
        from importlib.metadata import version

        return dist, version(dist)
    except Exception:  # not an installed distribution (a user's own class)
        return dist, None


#: How a file joblib or pickle can load begins: a pickle protocol-2+ opcode, or joblib's compressors
#: (zlib, gzip, bz2, xz, lzma, lz4, and the old ``ZF`` zlib format).
_PICKLE_STARTS = (b"\x80", b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00", b"\x04\x22\x4d\x18", b"ZF")


#: How a zip file begins: a skops file is a zip holding ``schema.json`` and the arrays.
_ZIP_START = b"PK\x03\x04"


def is_skops_file(path: str | Path) -> bool:
    """True when ``path`` is a file that starts like a zip (how a ``skops.io.dump`` file begins)."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(4) == _ZIP_START
    except OSError:
        return False


def skops_untrusted_types(path: Path) -> list[str]:
    """The types in the skops file ``path`` that skops does not trust by default, sorted.

    Reads only the file's type list (``skops.io.get_untrusted_types``): nothing in it runs."""
    sio = _skops_io(path)
    try:
        return sorted(sio.get_untrusted_types(file=path))
    except Exception as exc:  # not a skops zip: no schema.json, or a broken one
        raise ArtifactError(f"{str(path)!r} is a zip file but not a skops model file ({type(exc).__name__}: "
                            f"{exc}); pass {_LOADERS_HINT}") from None


def skops_trusted_types(path: Path, trusted: Iterable[str] = ()) -> list[str]:
    """``skops_untrusted_types(path)`` after checking that each is in ``trusted``; ArtifactError
    naming the missing ones and the fix."""
    needed = skops_untrusted_types(path)
    given = set(trusted)
    missing = [name for name in needed if name not in given]
    if missing:
        flags = " ".join(f"--trust {name}" for name in missing)
        raise ArtifactError(
            f"the skops file {str(path)!r} holds {len(missing)} type(s) skops does not trust by default: "
            f"{', '.join(missing)}; check that you know and trust them (loading one may run its code), then "
            f"list them: deploykit deploy ... {flags}, or load_artifact(..., trusted_types={missing!r})"
        )
    return needed


def _skops_io(path: Path) -> Any:
    try:
        import skops.io as sio
    except ModuleNotFoundError:
        raise ArtifactError(f"{str(path)!r} is a skops file, but the skops package is not installed; "
                            "pip install 'deploykit[skops]'") from None
    return sio


def _load_skops(path: Path, trusted: list[str]) -> tuple[Any, str]:
    sio = _skops_io(path)
    try:
        return sio.load(path, trusted=trusted), "skops"
    except ModuleNotFoundError as exc:
        raise ArtifactError(
            f"model file {str(path)!r} needs the Python package {exc.name!r} to load; install it"
        ) from None
    except Exception as exc:  # skops' own refusal (UntrustedTypesFoundException) or a broken file
        raise ArtifactError(f"the skops file {str(path)!r} could not be loaded ({type(exc).__name__}: {exc}); "
                            f"pass {_LOADERS_HINT}") from None


def _load_pickle(path: Path) -> tuple[Any, str]:
    with path.open("rb") as fh:  # the first bytes only: a large non-model file is refused without reading it
        head = fh.read(8)
    if not head.startswith(_PICKLE_STARTS):
        raise ArtifactError(
            f"{str(path)!r} is not a joblib/pickle file (it starts with {head[:2]!r}); pass {_LOADERS_HINT}"
        )
    try:
        import joblib

        return joblib.load(path), "joblib"
    except ModuleNotFoundError as exc:
        raise ArtifactError(
            f"model file {str(path)!r} needs the Python package {exc.name!r} to load; install it"
        ) from None
    except Exception as exc:
        if head[:1] != b"\x80":
            raise ArtifactError(
                f"{str(path)!r} is not a joblib/pickle file (it starts with {head!r}); pass {_LOADERS_HINT}"
            ) from None
        try:
            with path.open("rb") as fh:
                return pickle.load(fh), "pickle"
        except Exception:
            raise ArtifactError(
                f"{str(path)!r} could not be unpickled ({type(exc).__name__}: {exc}); pass {_LOADERS_HINT}"
            ) from None


def infer_schema(model: Any) -> Schema:
    """Best-effort schema from a fitted estimator: names from ``feature_names_in_``, types and an
    example from fitted encoders (categories -> string) and scalers (mean -> float)."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        n = getattr(model, "n_features_in_", None)
        if n is None:
            return Schema([])
        cols = [Column(f"f{i}", "float") for i in range(int(n))]
        return Schema(cols, {c.name: 0.0 for c in cols})
    types: dict[str, str] = {}
    example: dict[str, Any] = {}
    _walk_transformers(model, types, example)
    cols = [Column(str(n), types.get(str(n), "float")) for n in names]
    for c in cols:
        example.setdefault(c.name, 0.0 if c.type == "float" else None)
    from deploykit.payload import jsonable

    return Schema(cols, jsonable({c.name: example[c.name] for c in cols}))


def _walk_transformers(est: Any, types: dict[str, str], example: dict[str, Any]) -> None:
    for step in getattr(est, "steps", []) or []:  # Pipeline
        _walk_transformers(step[1], types, example)
    for _name, trans, cols in getattr(est, "transformers_", []) or []:  # ColumnTransformer
        if not isinstance(cols, (list, tuple)) or not cols or not isinstance(cols[0], str):
            continue
        last = trans.steps[-1][1] if hasattr(trans, "steps") else trans
        first = trans.steps[0][1] if hasattr(trans, "steps") else trans
        cats = getattr(last, "categories_", None) or getattr(first, "categories_", None)
        means = getattr(last, "mean_", None)
        for i, col in enumerate(cols):
            if cats is not None and i < len(cats):
                kind = cats[i].dtype.kind
                types[col] = "string" if kind in "OUS" else "integer" if kind in "iu" else "float"
                example[col] = cats[i][0].item() if hasattr(cats[i][0], "item") else cats[i][0]
            elif means is not None and i < len(means):
                types[col] = "float"
                example[col] = round(float(means[i]), 3)


def load_artifact(source: str | Path | Script, schema: str | Path | Schema | None = None,
                  credentials: str | Path | None = None, *, defer: bool = False,
                  trusted_types: Iterable[str] = ()) -> Artifact:
    """Load a model file (joblib/pickle or skops), a scoring-script bundle (``app.py:score`` or a
    folder with a ``deploykit.yaml``: see ``deploykit.bundle``), or any source a plugin loads (an
    MLflow model directory, ``models:/NAME@ALIAS``...), and gather its facts.

    Plugins answer through the ``deploykit_load_artifact`` hook (first answer wins); a path no
    plugin claims is read as a model file. Loading a joblib/pickle file runs code the file names;
    a skops file is loaded only when each type it holds that skops does not trust by default is
    in ``trusted_types`` (else ArtifactError naming them; ``extra["trusted_types"]`` then lists
    the ones it holds). The schema comes from ``schema`` (a Schema or
    a schema.json path), else a sidecar ``<model>.schema.json`` or ``schema.json`` beside the
    model, else what the loader finds (an MLflow signature) or the fitted estimator reveals
    (``feature_names_in_``, encoders, scalers). ``credentials`` is passed to plugins (the MLflow
    plugin reads its ``mlflow`` section for registry URIs). With ``defer=True`` a pickle file is
    hashed now and unpickled on first use of the model (see the module docstring); a skops
    file's types are checked now either way.
    """
    from deploykit.plugins import get_plugin_manager

    text = str(source)
    from deploykit.bundle import Script, is_bundle

    if isinstance(source, Script) or is_bundle(source):
        return _bundle_artifact(source)
    answer = get_plugin_manager().hook.deploykit_load_artifact(source=text, schema=schema, credentials=credentials)
    if answer is not None:
        return answer  # type: ignore[no-any-return]
    if _URI_SCHEME.match(text):
        hint = " (pip install 'deploykit[mlflow]')" if text.startswith(("models:/", "runs:/")) else ""
        raise ArtifactError(f"no installed plugin loads {text!r}{hint}; pass {_LOADERS_HINT}, or install the "
                            "plugin for that kind of URI (see 'deploykit targets')")
    path = Path(source).expanduser()
    if not path.exists():
        raise ArtifactError(f"model file {text!r} does not exist; pass {_LOADERS_HINT}")
    if path.is_dir():
        if (path / "MLmodel").is_file():
            raise ArtifactError(f"{text!r} is an MLflow model directory, but no installed plugin loads those; "
                                "install the mlflow extra (pip install 'deploykit[mlflow]') or pass a joblib/pickle file")
        raise ArtifactError(f"{text!r} is a directory without an MLmodel file; pass {_LOADERS_HINT}")
    try:
        digest = sha256_of(path)
    except OSError as exc:
        raise ArtifactError(f"model file {text!r} cannot be read ({exc.strerror}); check its permissions") from None
    skops = is_skops_file(path)
    trusted = skops_trusted_types(path, trusted_types) if skops else []
    artifact = Artifact.__new__(Artifact)
    given = _given_schema(path, schema)
    artifact.path, artifact.sha256 = path.resolve(), digest
    artifact.extra = {"trusted_types": trusted} if skops else {}
    artifact.flavor, artifact.source = "skops" if skops else "joblib", given[1] if given else _INFERRED
    if given is not None:
        artifact.schema = given[0]
    artifact.__dict__["_pending"] = _Pending(path, text, given, trusted)
    return artifact if defer else artifact.load()


_INFERRED = "inferred from the model"


def _bundle_artifact(source: Script | str | Path) -> Artifact:
    """A scoring-script bundle as an Artifact (``flavor == "script"``): ``path`` the staged folder
    (removed once the Artifact is garbage-collected, unless it was given staged), ``sha256`` over
    every file, ``model`` a ``ScriptModel`` that imports nothing until ``load()``,
    ``extra["bundle"]`` the manifest, ``extra["mode"]`` sync or async."""
    import shutil
    import weakref

    from deploykit.bundle import ScriptModel, schema_of, stage_bundle

    staged = stage_bundle(source)
    schema, origin = schema_of(staged.folder, staged.manifest)
    artifact = Artifact(path=staged.folder, sha256=sha256_of(staged.folder),
                        model=ScriptModel(staged.folder, staged.manifest), framework="script", framework_version=None,
                        schema=schema, flavor="script", source=origin,
                        extra={"bundle": staged.manifest, "mode": staged.manifest.get("mode", "sync"),
                               "bundle_name": staged.name})
    if staged.owned:
        weakref.finalize(artifact, shutil.rmtree, str(staged.folder), True)
    return artifact
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def _load_model(path: Path, text: str, trusted: list[str]) -> tuple[Any, str]:
    model, flavor = _load_skops(path, trusted) if is_skops_file(path) else _load_pickle(path)
    if not callable(getattr(model, "predict", None)):
        raise ArtifactError(
            f"{text!r} holds a {type(model).__module__}.{type(model).__name__}, which has no predict() method; "
            f"pass {_LOADERS_HINT}"
        )
    return model, flavor


def _given_schema(path: Path, schema: str | Path | Schema | None) -> tuple[Schema, str] | None:
    """The schema given or found beside the model (no unpickling needed), or None to infer it."""
    if isinstance(schema, Schema):
        return schema, "given"
    if schema is not None:
        return Schema.read(schema), str(schema)
    for candidate in (path.with_name(path.name.split(".")[0] + ".schema.json"), path.with_name("schema.json")):
        if candidate.is_file():
            return Schema.read(candidate), str(candidate)
    return None
