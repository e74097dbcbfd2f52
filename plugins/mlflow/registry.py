"""The MLflow side of a deployment: log the model in a run, register a version, move the alias.

A scikit-learn classifier keeps its ``sklearn`` flavor, with the ``python_function`` loader swapped
for our vendored ``sklearn_proba`` (labels and class probabilities); a sync scoring-script bundle
is a pyfunc of our vendored ``bundle_model`` (``code_paths``) with the bundle as its artifact.

Every function takes an ``MlflowClient`` from ``settings.connected`` and turns MLflow's
exceptions into DeploymentError naming the registered model, the tracking server and the fix.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

from deploykit.errors import ArtifactError, DeploymentError
from deploykit.faults import crash_point
from deploykit.http import redact_text

if TYPE_CHECKING:
    from deploykit.artifact import Artifact
    from deploykit_plugins.mlflow.settings import MlflowSettings

__all__ = ["BUNDLE_MODULE", "NAME_TAG", "PROBABILITY_MODULE", "REVISION_TAG", "SHA_TAG", "LoggedVersion",
           "bundle_requirements", "delete_version", "find_created", "log_and_register", "mlflow_errors", "point",
           "pointed_version", "unpoint"]

#: The tags deploykit puts on the runs and versions it creates: the model's sha256, the deployment
#: name and the revision being deployed. Together they find what an interrupted deploy made
#: when its ids were never recorded (``find_created``).
SHA_TAG = "deploykit.sha256"
NAME_TAG = "deploykit.name"
REVISION_TAG = "deploykit.revision"
#: The top-level names our vendored pyfunc modules have in a model's ``code/`` folder (what the
#: scoring server imports; they need neither deploykit nor deploykit_plugins there).
BUNDLE_MODULE = "deploykit_bundle_model"
PROBABILITY_MODULE = "deploykit_sklearn_proba"
_SOURCES = {BUNDLE_MODULE: Path(__file__).with_name("bundle_model.py"),
            PROBABILITY_MODULE: Path(__file__).with_name("sklearn_proba.py")}
_INCLUDES = ("-r", "-c", "--requirement", "--constraint")
_MLFLOW_TYPES = {"integer": "long", "float": "double", "string": "string", "boolean": "boolean",
                 "datetime": "datetime"}


@dataclass
class LoggedVersion:
    """What one deploy created in MLflow: the run, the logged model and the registered version."""

    name: str
    version: str
    run_id: str
    model_uri: str
    experiment_id: str


@contextlib.contextmanager
def mlflow_errors(what: str, settings: MlflowSettings) -> Iterator[None]:
    """Turn MLflow's exceptions (and artifact store I/O errors) in the block into DeploymentError."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise DeploymentError(f"{what} failed at {settings.shown_uri}: {redact_text(exc.message)}") from None
    except (OSError, ImportError) as exc:  # artifact store (S3, disk) and serialization problems
        raise DeploymentError(f"{what} failed at {settings.shown_uri}: {type(exc).__name__}: {redact_text(str(exc))}; "
                              "check the artifact store settings (s3_endpoint_url, aws_* keys)") from None


def _signature(artifact: Artifact) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    cols = artifact.schema.columns
    if not cols or any(c.type not in _MLFLOW_TYPES for c in cols):
        return None
    return ModelSignature(inputs=Schema([ColSpec(_MLFLOW_TYPES[c.type], c.name, required=not c.nullable)
                                         for c in cols]))


def _example(artifact: Artifact) -> Any:
    example = artifact.schema.example
    if not example or any(v is None for v in example.values()):
        return None
    import pandas as pd

    return pd.DataFrame([example], columns=artifact.schema.names)


def _pins(*dists: str) -> list[str]:
    out = []
    for dist in dict.fromkeys(dists):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{dist}=={version(dist)}")
    return out


def _is_sklearn(model: Any) -> bool:
    return type(model).__module__.split(".")[0] == "sklearn"


def _trusted_types(model: Any, settings: MlflowSettings) -> list[str]:
    if settings.skops_trusted_types is not None:
        return list(settings.skops_trusted_types)
    import skops.io

    # The model is the user's own fitted estimator: trust the types it holds, and write them in MLmodel.
    return [str(t) for t in skops.io.get_untrusted_types(data=skops.io.dumps(model))]


def _log_sklearn(artifact: Artifact, settings: MlflowSettings, run_id: str) -> Any:
    import mlflow.sklearn
    from mlflow.models import Model

    fmt = settings.serialization_format
    kwargs: dict[str, Any] = {"serialization_format": fmt}
    if fmt == "skops":
        kwargs["skops_trusted_types"] = _trusted_types(artifact.model, settings)
    if not settings.infer_pip_requirements:
        kwargs["pip_requirements"] = _pins("scikit-learn", "numpy", "scipy", "pandas",
                                           "skops" if fmt == "skops" else "cloudpickle")
    flavor: Any = mlflow.sklearn
    if callable(getattr(artifact.model, "predict_proba", None)):
        flavor = SimpleNamespace(__name__="mlflow.sklearn", save_model=_save_with_probabilities)
    return Model.log(None, flavor, name="model", sk_model=artifact.model, run_id=run_id,
                     signature=_signature(artifact), input_example=_example(artifact), **kwargs)


def _save_with_probabilities(path: str, mlflow_model: Any, **kwargs: Any) -> None:
    """``mlflow.sklearn.save_model``, then the ``python_function`` flavor's loader swapped for our
    vendored ``deploykit_sklearn_proba`` (in the model's ``code/``), so the scoring server answers
    labels and class probabilities. The ``sklearn`` flavor stays as MLflow wrote it."""
    import mlflow.pyfunc
    import mlflow.sklearn

    mlflow.sklearn.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
    code = Path(path) / "code"
    code.mkdir(exist_ok=True)
    shutil.copyfile(_SOURCES[PROBABILITY_MODULE], code / f"{PROBABILITY_MODULE}.py")
    conf = mlflow_model.flavors[mlflow.pyfunc.FLAVOR_NAME]
    conf[mlflow.pyfunc.MAIN] = PROBABILITY_MODULE
    conf[mlflow.pyfunc.CODE] = "code"
    mlflow_model.save(str(Path(path) / "MLmodel"))


def _shipped(name: str, folder: Path) -> tuple[ModuleType, Path]:
    """Our vendored module ``name``: copied into ``folder`` under that name (for ``code_paths``) and
    imported under that top-level name here, so cloudpickle pickles its classes by reference to
    the module the scoring server imports from the model's ``code/`` (no code in the pickle)."""
    import importlib.util

    path = folder / f"{name}.py"
    shutil.copyfile(_SOURCES[name], path)
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, _SOURCES[name])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module, path


def bundle_requirements(artifact: Artifact) -> list[str]:
    """The pip requirements of a bundle's model: the lines of its requirements file (comments
    dropped), plus cloudpickle (which unpickles the wrapper) unless the file names it. ArtifactError
    for a line that includes another file (``-r``/``-c``): the bundle ships only its own."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    name = artifact.extra["bundle"].get("requirements")
    lines: list[str] = []
    if name:
        text = (Path(artifact.path) / name).read_text(encoding="utf-8")
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(_INCLUDES):
                raise ArtifactError(f"line {number} of the bundle's requirements file {name!r} includes another file "
                                    f"({line.split()[0]}), which the bundle does not ship; write those requirements "
                                    f"into {name!r} itself")
            lines.append(line)
    named = set()
    for line in lines:
        with contextlib.suppress(InvalidRequirement):
            named.add(canonicalize_name(Requirement(line).name))
    return lines + [pin for pin in _pins("cloudpickle") if "cloudpickle" not in named]


def _log_bundle(artifact: Artifact, run_id: str, requirements: list[str]) -> Any:
    """A scoring-script bundle as a pyfunc model: our vendored ``BundleModel`` (``code_paths``), the
    bundle folder as its ``bundle`` artifact, the bundle's requirements as the model's. No signature
    and no input example: MLflow would call the script here to check them, and user code runs only
    in the scoring server."""
    import mlflow.pyfunc
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="deploykit-mlflow-code-") as folder:
        module, path = _shipped(BUNDLE_MODULE, Path(folder))
        bundle = _bundle_view(artifact, Path(folder) / module.ARTIFACT)
        return Model.log(None, mlflow.pyfunc, name="model", python_model=module.BundleModel(),
                         artifacts={module.ARTIFACT: str(bundle)}, code_paths=[str(path)],
                         pip_requirements=requirements, run_id=run_id)


def _bundle_view(artifact: Artifact, view: Path) -> Path:
    """The bundle folder as MLflow should copy it: hard links to its files (copies across file
    systems; MLflow refuses symbolic links that leave the folder), except the env file, which is
    a fresh copy with mode 0600, so the copies MLflow makes
    (its staging folder, a file artifact store, the scoring server's download) keep it private
    even when the user's own file is world-readable. The folder is named ``bundle`` in the model."""
    import os

    view.mkdir()
    env = artifact.extra["bundle"].get("env")
    for source in sorted(Path(artifact.path).iterdir()):
        if source.name == env:
            fd = os.open(view / source.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, source.open("rb") as data:
                shutil.copyfileobj(data, out)
        elif source.is_file():
            try:
                os.link(source, view / source.name)
            except OSError:
                shutil.copy2(source, view / source.name)
    return view


def _log_pyfunc(artifact: Artifact, settings: MlflowSettings, run_id: str) -> Any:
    import cloudpickle
    import mlflow.pyfunc
    from mlflow.models import Model

    from deploykit_plugins.mlflow import pyfunc as wrapper

    kwargs: dict[str, Any] = {}
    if not settings.infer_pip_requirements:
        kwargs["pip_requirements"] = _pins(artifact.framework, "numpy", "pandas", "cloudpickle")
    cloudpickle.register_pickle_by_value(wrapper)
    try:
        return Model.log(None, mlflow.pyfunc, name="model", python_model=wrapper.Predictor(artifact.model),
                         run_id=run_id, signature=_signature(artifact) or None, input_example=_example(artifact),
                         **kwargs)
    finally:
        cloudpickle.unregister_pickle_by_value(wrapper)


def _log_directory(client: Any, artifact: Artifact, experiment_id: str, run_id: str) -> Any:
    """An MLflow model directory without the sklearn flavor: upload it as it is."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    model = client.create_logged_model(experiment_id=experiment_id, name="model", source_run_id=run_id)
    client.log_model_artifacts(model.model_id, str(artifact.path))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return type("Info", (), {"model_uri": f"models:/{model.model_id}", "model_id": model.model_id})()


def _experiment(client: Any, settings: MlflowSettings) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(settings.experiment)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise DeploymentError(
                f"experiment {settings.experiment!r} at {settings.shown_uri} is deleted; restore it "
                "(mlflow experiments restore) or set mlflow.experiment to another name")
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(settings.experiment))
    except MlflowException:  # created meanwhile by a concurrent deploy
        return str(client.get_experiment_by_name(settings.experiment).experiment_id)


def log_and_register(client: Any, settings: MlflowSettings, artifact: Artifact, deployment: str,
                     model_name: str, *, revision: int = 1, action: str = "create",
                     note: Callable[..., None] = lambda **ids: None) -> LoggedVersion:
    """Log ``artifact`` in a new run of the settings' experiment and register it as a new version
    of ``model_name``. A failure before the version exists leaves nothing behind (the run is deleted).

    The run and the version carry the name, revision and sha256 tags; ``note`` gets the run id
    and the version the moment MLflow returns them (crash points ``<action>:run-created`` and
    ``<action>:version-registered`` follow)."""
    from mlflow.exceptions import MlflowException

    tags = {NAME_TAG: deployment, SHA_TAG: artifact.sha256, REVISION_TAG: str(revision)}
    requirements = bundle_requirements(artifact) if artifact.flavor == "script" else None
    with mlflow_errors(f"creating a run in experiment {settings.experiment!r}", settings):
        experiment_id = _experiment(client, settings)
        run = client.create_run(experiment_id, tags={"mlflow.runName": f"deploykit-{deployment}-r{revision}",
                                                     **tags, "mlflow.source.name": "deploykit"})
    run_id = run.info.run_id
    note(run_id=run_id, experiment_id=str(experiment_id))
    crash_point(f"{action}:run-created")
    try:
        with mlflow_errors(f"logging the model of {deployment!r}", settings):
            if requirements is not None:
                info = _log_bundle(artifact, run_id, requirements)
            elif _is_sklearn(artifact.model):
                info = _log_sklearn(artifact, settings, run_id)
            elif artifact.flavor == "mlflow":
                info = _log_directory(client, artifact, experiment_id, run_id)
            else:
                info = _log_pyfunc(artifact, settings, run_id)
            client.log_param(run_id, "model_sha256", artifact.sha256)
            client.set_terminated(run_id, "FINISHED")
        with mlflow_errors(f"registering a version of {model_name!r}", settings):
            try:
                client.create_registered_model(model_name, tags={"deploykit": "true"})
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            mv = client.create_model_version(model_name, source=info.model_uri, run_id=run_id,
                                             model_id=getattr(info, "model_id", None),
                                             tags=tags)
            note(registered_model=model_name, version=str(mv.version))
    except BaseException:
        with contextlib.suppress(Exception):
            client.delete_run(run_id)
        raise
    crash_point(f"{action}:version-registered")
    return LoggedVersion(model_name, str(mv.version), run_id, f"models:/{model_name}/{mv.version}", experiment_id)


def pointed_version(client: Any, settings: MlflowSettings, model_name: str) -> str | None:
    """The version the alias (or stage) of ``model_name`` points at now, or None."""
    from mlflow.exceptions import MlflowException

    with mlflow_errors(f"reading the {settings.pointer} of {model_name!r}", settings):
        try:
            if settings.stage:
                found = _quiet(client.get_latest_versions, model_name, stages=[settings.stage])
                return str(max(int(v.version) for v in found)) if found else None
            return str(client.get_model_version_by_alias(model_name, settings.alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise


def _quiet(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a stage API without its FutureWarning: the user chose stages knowingly (see docs/mlflow.md)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def point(client: Any, settings: MlflowSettings, model_name: str, version: str) -> None:
    """Move the alias (or transition the stage, archiving the version that held it) to ``version``."""
    with mlflow_errors(f"pointing the {settings.pointer} of {model_name!r} at version {version}", settings):
        if settings.stage:
            _quiet(client.transition_model_version_stage, model_name, version, settings.stage,
                   archive_existing_versions=True)
        else:
            client.set_registered_model_alias(model_name, settings.alias, version)


def unpoint(client: Any, settings: MlflowSettings, model_name: str, version: str) -> bool:
    """Remove the alias (or archive the stage) if it still points at ``version``; True if it did."""
    if pointed_version(client, settings, model_name) != str(version):
        return False
    with mlflow_errors(f"removing the {settings.pointer} of {model_name!r}", settings):
        if settings.stage:
            _quiet(client.transition_model_version_stage, model_name, version, "Archived")
        else:
            client.delete_registered_model_alias(model_name, settings.alias)
    return True


def delete_version(client: Any, settings: MlflowSettings, model_name: str, version: str, run_id: str | None) -> None:
    """Delete one registered version (and the run deploykit logged it in); gone already is fine."""
    from mlflow.exceptions import MlflowException

    with mlflow_errors(f"deleting version {version} of {model_name!r}", settings):
        try:
            client.delete_model_version(model_name, version)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        if run_id:
            with contextlib.suppress(MlflowException):
                client.delete_run(run_id)
        with contextlib.suppress(MlflowException):
            registered = client.get_registered_model(model_name)
            if (registered.tags or {}).get("deploykit") == "true" and not client.search_model_versions(
                    f"name = '{model_name}'", max_results=1):
                client.delete_registered_model(model_name)



def find_created(client: Any, settings: MlflowSettings, model_name: str, deployment: str, revision: int,
                 sha256: str | None) -> tuple[list[tuple[str, str | None]], list[str]]:
    """What a deploy of ``revision`` of ``deployment`` registered, found by its tags: the versions of
    ``model_name`` as (version, run id), and every run in the experiment that carries the tags."""
    from mlflow.exceptions import MlflowException

    def ours(tags: dict[str, str]) -> bool:
        return tags.get(NAME_TAG) == deployment and tags.get(REVISION_TAG) == str(revision) \
            and (sha256 is None or tags.get(SHA_TAG) == sha256)

    versions: list[tuple[str, str | None]] = []
    runs: list[str] = []
    with mlflow_errors(f"searching the versions of {model_name!r} an interrupted deploy registered", settings):
        with contextlib.suppress(MlflowException):
            for mv in client.search_model_versions(f"name = '{model_name}'", max_results=1000):
                if ours(dict(mv.tags or {})):
                    versions.append((str(mv.version), mv.run_id))
        experiment = client.get_experiment_by_name(settings.experiment)
        if experiment is not None:
            query = (f"tags.`{NAME_TAG}` = '{deployment}' and tags.`{REVISION_TAG}` = '{revision}'")
            for run in client.search_runs([experiment.experiment_id], filter_string=query, max_results=1000):
                if ours(dict(run.data.tags or {})):
                    runs.append(run.info.run_id)
    return versions, runs
