"""MLflow models as deploykit artifacts: a local MLflow model directory, or a registry URI.

``deploykit deploy models:/NAME@ALIAS --target local`` (or any target) reads the model from the
registry through ``load_registry_artifact``; ``deploykit deploy ./model-dir`` (a folder with an
``MLmodel`` file) through ``load_mlflow_dir``. A model with the ``sklearn`` flavor is unwrapped
to the estimator itself, so targets that can (the local server) answer with probabilities too;
other models are used through MLflow's ``pyfunc`` interface (flavor ``"mlflow"``).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from deploykit.artifact import Artifact, infer_schema, sha256_of
from deploykit.errors import ArtifactError
from deploykit.schema import Column, Schema

__all__ = ["RegistryModel", "load_mlflow_dir", "load_registry_artifact", "resolve_uri", "schema_from_signature"]

#: MLflow signature column types -> deploykit schema types.
_SIGNATURE_TYPES = {"long": "integer", "integer": "integer", "double": "float", "float": "float",
                    "string": "string", "boolean": "boolean", "datetime": "datetime", "binary": "any"}
#: MLflow flavor -> the distribution it comes from (the rest keep the flavor's name).
_FLAVOR_DISTS = {"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost",
                 "pytorch": "torch", "tensorflow": "tensorflow", "keras": "keras", "statsmodels": "statsmodels",
                 "prophet": "prophet", "spacy": "spacy", "transformers": "transformers", "onnx": "onnx"}
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<ref>[^/]+))/?$")


def schema_from_signature(signature: Any, example: dict[str, Any] | None = None) -> Schema | None:
    """A deploykit Schema from an MLflow ModelSignature with named columns, or None if it has none."""
    inputs = getattr(signature, "inputs", None)
    if inputs is None or not getattr(inputs, "has_input_names", lambda: False)():
        return None
    columns = []
    for spec in inputs.inputs:
        kind = getattr(getattr(spec, "type", None), "name", None)
        if kind is None:  # an array/object column: accept anything
            kind = "any"
        columns.append(Column(str(spec.name), _SIGNATURE_TYPES.get(str(kind), "any"),
                              not getattr(spec, "required", True)))
    names = {c.name for c in columns}
    return Schema(columns, {k: v for k, v in (example or {}).items() if k in names})


def _example_row(meta: Any, path: Path) -> dict[str, Any] | None:
    try:
        example = meta.load_input_example(str(path))
    except Exception:  # a broken example file must not stop a deploy
        return None
    if example is None:
        return None
    from deploykit.payload import jsonable

    if hasattr(example, "iloc"):
        return jsonable(example.iloc[0].to_dict()) if len(example) else None
    if isinstance(example, dict) and all(not isinstance(v, (list, dict)) for v in example.values()):
        return jsonable(example)  # type: ignore[no-any-return]
    return None


def _framework(flavors: dict[str, Any]) -> tuple[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    for flavor, conf in flavors.items():
        if flavor == "python_function":
            continue
        dist = _FLAVOR_DISTS.get(flavor, flavor)
        pinned = next((str(v) for k, v in (conf or {}).items() if k.endswith("_version") and k != "mlflow_version"), None)
        try:
            return dist, pinned or version(dist)
        except PackageNotFoundError:
            return dist, pinned
    return "mlflow", None


def load_mlflow_dir(path: str | Path, schema: str | Path | Schema | None = None) -> Artifact:
    """Load an MLflow model directory (one with an ``MLmodel`` file) as an Artifact.

    The schema comes from ``schema``, else a ``schema.json`` in the directory, else the model's
    MLflow signature (with its input example as the example row), else what the fitted
    estimator reveals. ``extra`` keeps the MLflow facts: flavors, run_id, model_uuid.
    """
    path = Path(path).expanduser()
    if not (path / "MLmodel").is_file():
        raise ArtifactError(f"{str(path)!r} has no MLmodel file, so it is not an MLflow model directory; "
                            "pass the folder mlflow.<flavor>.save_model wrote, or a joblib/pickle file")
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        meta = Model.load(str(path))
    except (MlflowException, OSError, ValueError) as exc:
        raise ArtifactError(f"the MLmodel file in {str(path)!r} cannot be read ({exc}); re-save the model") from None
    flavors = dict(meta.flavors or {})
    try:
        if "sklearn" in flavors:
            import mlflow.sklearn

            model, flavor = mlflow.sklearn.load_model(str(path)), "sklearn"
        elif "python_function" in flavors:
            import mlflow.pyfunc

            model, flavor = mlflow.pyfunc.load_model(str(path)), "mlflow"
        else:
            raise ArtifactError(
                f"the MLflow model in {str(path)!r} has flavors {sorted(flavors)} but no python_function flavor, "
                "so it cannot be served; log it with a flavor that adds python_function (e.g. mlflow.sklearn)"
            )
    except ModuleNotFoundError as exc:
        raise ArtifactError(f"the MLflow model in {str(path)!r} needs the Python package {exc.name!r} to load; "
                            "install it") from None
    except MlflowException as exc:
        raise ArtifactError(f"the MLflow model in {str(path)!r} could not be loaded: {exc.message}") from None
    framework, framework_version = _framework(flavors)
    example = _example_row(meta, path)
    resolved, origin = _resolve_schema(path, schema, meta, model, example)
    extra = {"mlflow_flavors": sorted(flavors), "run_id": meta.run_id, "model_uuid": meta.model_uuid,
             "serialization_format": (flavors.get("sklearn") or {}).get("serialization_format")}
    return Artifact(path.resolve(), sha256_of(path), model, framework, framework_version, resolved, flavor,
                    origin, {k: v for k, v in extra.items() if v is not None})


def _resolve_schema(path: Path, schema: str | Path | Schema | None, meta: Any, model: Any,
                    example: dict[str, Any] | None) -> tuple[Schema, str]:
    if isinstance(schema, Schema):
        return schema, "given"
    if schema is not None:
        return Schema.read(schema), str(schema)
    if (path / "schema.json").is_file():
        return Schema.read(path / "schema.json"), str(path / "schema.json")
    from_signature = schema_from_signature(meta.signature, example)
    if from_signature is not None:
        return from_signature, "the MLflow signature"
    inferred = infer_schema(model)
    if example and not inferred.example:
        inferred.example = example
    return inferred, "inferred from the model"


class RegistryModel:
    """A ``models:/`` URI resolved to one registered model version."""

    def __init__(self, uri: str, name: str, version: str, run_id: str | None, source: str | None) -> None:
        self.uri = uri
        self.name = name
        self.version = version
        self.run_id = run_id
        self.source = source

    @property
    def pinned_uri(self) -> str:
        """``models:/NAME/VERSION``: the same model even after the alias moves."""
        return f"models:/{self.name}/{self.version}"


def resolve_uri(client: Any, uri: str, where: str) -> RegistryModel:
    """Resolve ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME/STAGE`` or
    ``models:/NAME/latest`` to a version; ArtifactError naming what is registered when it is not there."""
    from mlflow.exceptions import MlflowException

    match = _URI.match(uri)
    if match is None:
        raise ArtifactError(f"{uri!r} is not a registry model URI; write models:/NAME@ALIAS, models:/NAME/VERSION "
                            "or models:/NAME/latest")
    name, alias, ref = match["name"], match["alias"], match["ref"]
    try:
        if alias is not None:
            mv = client.get_model_version_by_alias(name, alias)
        elif ref.isdigit():
            mv = client.get_model_version(name, ref)
        else:
            stages = None if ref.lower() == "latest" else [ref.title()]
            found = client.get_latest_versions(name, stages=stages)
            if not found:
                raise ArtifactError(f"registered model {name!r} at {where} has no version in stage {ref!r}; "
                                    "use models:/NAME@ALIAS or models:/NAME/VERSION")
            mv = max(found, key=lambda v: int(v.version))
    except MlflowException as exc:
        raise ArtifactError(_not_found(client, uri, name, alias, ref, where, exc)) from None
    return RegistryModel(uri, name, str(mv.version), mv.run_id, mv.source)


def _not_found(client: Any, uri: str, name: str, alias: str | None, ref: str | None, where: str, exc: Any) -> str:
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        return (f"{uri}: there is no registered model {name!r} at {where}; check the name "
                "(mlflow models are listed in the tracking server's Models tab) or the tracking URI")
    if alias is not None:
        known = ", ".join(f"@{a}" for a in sorted(registered.aliases or {})) or "none"
        return f"{uri}: registered model {name!r} at {where} has no alias {alias!r} (its aliases: {known}); " \
               "set the alias in MLflow or name a version: models:/NAME/VERSION"
    return f"{uri}: registered model {name!r} at {where} has no version {ref!r} ({getattr(exc, 'message', exc)})"


def _download_dir() -> Path:
    """A fresh temporary folder for one download, removed when this process exits (targets copy
    what they keep, e.g. the local target's artifact store)."""
    import atexit
    import shutil

    folder = Path(tempfile.mkdtemp(prefix="deploykit-mlflow-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def load_registry_artifact(uri: str, schema: str | Path | Schema | None = None,
                           credentials: str | Path | None = None) -> Artifact:
    """Download a registered model version (``models:/NAME@ALIAS`` ...) or a run's model
    (``runs:/RUN_ID/PATH``) and load it as an Artifact named after the registered model.

    The tracking server comes from the ``mlflow:`` credentials section (``credentials`` or
    ./credentials.yaml, ``DEPLOYKIT_MLFLOW_*``), else ``MLFLOW_TRACKING_URI``. The resolved
    version is recorded in ``extra`` (``registered_model``, ``version``, ``run_id``, ``model_uri``).
    """
    from mlflow.exceptions import MlflowException

    from deploykit.http import redact_text
    from deploykit_plugins.mlflow.settings import connected, ensure_reachable, settings_for_loading

    settings = settings_for_loading(credentials)
    ensure_reachable(settings, ArtifactError)
    where = settings.shown_uri  # what messages and records show: no password
    with connected(settings) as client:
        if uri.startswith("runs:/"):
            run_id, _, model_path = uri[len("runs:/"):].strip("/").partition("/")
            resolved = RegistryModel(uri, model_path.rsplit("/", 1)[-1] or run_id, "", run_id, None)
            fetch, folder = uri, _download_dir()  # MLflow names the folder after the run's model path
        else:
            resolved = resolve_uri(client, uri, where)
            fetch, folder = resolved.pinned_uri, _download_dir() / resolved.name
        try:
            import mlflow.artifacts

            local = mlflow.artifacts.download_artifacts(artifact_uri=fetch, dst_path=str(folder),
                                                        tracking_uri=settings.tracking_uri)
        except MlflowException as exc:
            raise ArtifactError(f"{uri} could not be downloaded from {where}: {redact_text(exc.message)}") from None
        except Exception as exc:  # boto3/urllib errors of the artifact store
            raise ArtifactError(f"{uri} could not be downloaded from the artifact store of {where} "
                                f"({type(exc).__name__}: {redact_text(str(exc))}); check the S3 settings (s3_endpoint_url, "
                                "aws_access_key_id, aws_secret_access_key) of the mlflow section") from None
    artifact = load_mlflow_dir(local, schema)
    artifact.source = uri
    artifact.extra.update({"registered_model": resolved.name, "version": resolved.version, "run_id": resolved.run_id
                           or artifact.extra.get("run_id"), "model_uri": uri, "tracking_uri": where})
    return artifact
