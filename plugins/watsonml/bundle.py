"""Scoring-script bundles on Watson: a deployable Python function with the bundle as a package extension.

One revision of a bundle is three things on Watson, all tagged or named after the deployment:

1. a **package extension** (type ``pip_zip``): the bundle folder (script, model file, extra
   files, ``.env``, ``deploykit.yaml``) as a source distribution zip of the Python package
   ``deploykit_<name>_<sha12>``, named ``deploykit-<name>-r<revision>-<sha12>``;
2. a **software specification** of the same name, derived from the base one
   (``watsonml.software_spec``, default ``runtime-25.1-py3.12``), with that extension added;
3. a **function asset** (``repository.store_function``) on that specification, tagged
   ``deploykit``, ``deploykit-name:<name>``, ``deploykit-rev:<revision>`` with the bundle's
   sha256 in its ``custom`` metadata, and its revision 1. Its code is
   :func:`~deploykit_plugins.watsonml.deployable.deploykit_bundle_function` with the package
   name and entrypoints as its (primitive) default arguments.

An online deployment serves a sync bundle's function; an async bundle's function gets a
**batch** deployment instead (hardware spec ``watsonml.batch_hardware_spec``), and scoring it
runs one Watson batch job: the rows are the job's ``input_data``, the function writes them as
the execution's input file, runs the script and answers its output file's rows. An update
stores a new triple and patches the deployment's asset to it (same id and URL), rollback
patches it back, delete removes every triple of the record and its history. The record keeps
the function's id and revision as ``model_uid``/``model_rev`` (so waits, rollback and status
work as for a model), plus ``asset_kind: function``, ``bundle_mode``, ``software_spec_uid``,
``package_extension_uid`` and ``package``.

The env file's values travel only inside the package (the zip is built in a private
temporary folder, never under ``.deploykit/``); no name, tag, description or record holds them.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gzip
import inspect
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.deployment import Deployment
from deploykit.errors import DeployKitError, DeploymentError
from deploykit.faults import crash_point

if TYPE_CHECKING:
    from deploykit.artifact import Artifact
    from deploykit.operations import PendingOperation
    from deploykit.payload import Predictions
    from deploykit_plugins.watsonml.target import WatsonTarget

__all__ = ["ASSET_KIND", "BUNDLE_IDS", "DEFAULT_BASE_SPEC", "adopted_ids", "bundle_files", "decode_answer",
           "delete_parts", "deploy_bundle", "function_source", "is_async", "is_function", "package_name",
           "parts_made_by", "refuse_model_over_function", "remove_parts", "resource_name", "score_bundle",
           "update_bundle"]

#: ``asset_kind`` of a record whose Watson asset is a deployable function.
ASSET_KIND = "function"
#: The base software specification a bundle's own one is derived from, unless ``watsonml.software_spec`` says.
DEFAULT_BASE_SPEC = "runtime-25.1-py3.12"
#: The record ids a bundle adds to a model's.
BUNDLE_IDS = ("asset_kind", "bundle_mode", "software_spec_uid", "package_extension_uid", "package")
_VERSION = "1.0"


def is_function(deployment: Deployment | None) -> bool:
    """True when the record's Watson asset is a deployable function (a bundle)."""
    return deployment is not None and deployment.ids.get("asset_kind") == ASSET_KIND


def package_name(name: str, sha256: str) -> str:
    """The Python package a bundle revision is installed as: ``deploykit_<name>_<sha12>``."""
    return "deploykit_" + (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "bundle") + "_" + sha256[:12]


def resource_name(name: str, revision: int, sha256: str) -> str:
    """The name of a revision's package extension and software specification (found by it in reconcile)."""
    return f"deploykit-{name}-r{revision}-{sha256[:12]}"


def is_async(deployment: Deployment | None) -> bool:
    """True when the record serves an async bundle (a function on a batch deployment)."""
    return is_function(deployment) and deployment is not None and deployment.ids.get("bundle_mode") == "async"


def function_source(package: str, manifest: dict[str, Any]) -> str:
    """The stored code: the outer function with the bundle's names as its defaults, then ``score = ...()``."""
    from deploykit_plugins.watsonml.deployable import deploykit_bundle_function

    tree = ast.parse(inspect.getsource(deploykit_bundle_function))
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    defaults = {"package": package, "entrypoint": manifest["entrypoint"], "preprocess": manifest.get("preprocess") or "",
                "env_file": manifest.get("env") or "", "model_file": manifest.get("model_file") or "",
                "mode": manifest.get("mode") or "sync"}
    func.args.defaults = [ast.Constant(defaults[a.arg]) for a in func.args.args]
    return f"{ast.unparse(func)}\n\n\nscore = {func.name}()\n"


def _requirements(folder: Path, manifest: dict[str, Any]) -> list[str]:
    if not manifest.get("requirements"):
        return []
    lines = (folder / manifest["requirements"]).read_text(encoding="utf-8").splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip() and not ln.strip().startswith("-")]


@contextlib.contextmanager
def bundle_files(artifact: Artifact, package: str) -> Iterator[tuple[Path, Path]]:
    """(the package extension zip, the function's ``.py.gz``), in a private temporary folder removed afterwards.

    The zip is a source distribution ``<package>-1.0/`` whose ``setup.py`` installs the bundle's
    files as the package's data (its ``install_requires`` from the bundle's requirements). It is
    built outside ``.deploykit/`` because it holds the env file."""
    folder: Path = artifact.path
    manifest: dict[str, Any] = artifact.extra["bundle"]
    if (folder / "__init__.py").exists():
        raise DeploymentError(f"the bundle {artifact.name!r} has a file named __init__.py, which Watson's package "
                              "of the bundle needs for itself; rename it")
    tmp = Path(tempfile.mkdtemp(prefix="deploykit-watson-bundle-"))
    try:
        root = f"{package}-{_VERSION}"
        setup = (f"from setuptools import setup\n\nsetup(name={package!r}, version={_VERSION!r}, packages=[{package!r}], "
                 f"package_data={{{package!r}: ['*', '.*']}}, install_requires={_requirements(folder, manifest)!r}, "
                 "zip_safe=False)\n")
        archive = tmp / f"{root}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{root}/setup.py", setup)
            zf.writestr(f"{root}/PKG-INFO", f"Metadata-Version: 2.1\nName: {package}\nVersion: {_VERSION}\n")
            zf.writestr(f"{root}/{package}/__init__.py", '"""A deploykit scoring-script bundle (data files only)."""\n')
            for path in sorted(p for p in folder.iterdir() if p.is_file()):
                info = zipfile.ZipInfo.from_file(path, f"{root}/{package}/{path.name}")
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o600 if path.name == ".env" else 0o644) << 16
                zf.writestr(info, path.read_bytes())
        code = tmp / "function.py.gz"
        code.write_bytes(gzip.compress(function_source(package, manifest).encode("utf-8")))
        yield archive, code
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- deploy, update ---------------------------------------------------------------------
def _store(target: WatsonTarget, name: str, artifact: Artifact, current: Deployment | None) -> dict[str, Any]:
    """Store one revision's package extension, software specification and function (with its revision 1).

    Every id is noted the moment Watson returns it; on a failure what was made is removed again."""
    s, note, action = target.session, target.context.note, target._action
    base = target.settings.software_spec or DEFAULT_BASE_SPEC
    base_id = s.software_spec_id(base)
    label = resource_name(name, target._revision, artifact.sha256)
    package = package_name(name, artifact.sha256)
    made: dict[str, Any] = {"asset_kind": ASSET_KIND, "package": package, "software_spec": base,
                            "model_type": ASSET_KIND, "space_id": s.space_id,
                            "bundle_mode": artifact.extra.get("mode") or "sync"}
    try:
        with bundle_files(artifact, package) as (archive, code):
            def store_extension(c: Any) -> Any:
                names = c.package_extensions.ConfigurationMetaNames
                return c.package_extensions.store({names.NAME: label, names.TYPE: "pip_zip",
                                                   names.DESCRIPTION: f"deploykit bundle {name!r} revision "
                                                                      f"{target._revision}"}, str(archive))

            ext = s.call(f"uploading bundle {name!r} as package extension {label!r}", store_extension, idempotent=False)
            made["package_extension_uid"] = str(ext["metadata"]["asset_id"])
            note(package_extension_uid=made["package_extension_uid"], space_id=s.space_id)
            crash_point(f"{action}:package-stored")

            def store_spec(c: Any) -> Any:
                names = c.software_specifications.ConfigurationMetaNames
                return c.software_specifications.store({
                    names.NAME: label, names.DESCRIPTION: f"{base} with the deploykit bundle {name!r}",
                    names.BASE_SOFTWARE_SPECIFICATION: {"guid": base_id}})

            spec = s.call(f"creating software specification {label!r} from {base}", store_spec, idempotent=False)
            made["software_spec_uid"] = str(spec["metadata"]["asset_id"])
            note(software_spec_uid=made["software_spec_uid"])
            s.call(f"adding package extension {label!r} to software specification {label!r}",
                   lambda c: c.software_specifications.add_package_extension(made["software_spec_uid"],
                                                                             made["package_extension_uid"]))
            crash_point(f"{action}:spec-stored")

            def store_function(c: Any) -> Any:
                names = c.repository.FunctionMetaNames
                return c.repository.store_function(str(code), {
                    names.NAME: name, names.TYPE: "python", names.SOFTWARE_SPEC_ID: made["software_spec_uid"],
                    names.DESCRIPTION: f"deploykit: scoring script {artifact.extra['bundle']['entrypoint']} "
                                       f"(sha256 {artifact.sha256[:12]})",
                    names.TAGS: target._tags(name),
                    names.CUSTOM: {"deploykit_sha256": artifact.sha256, "deploykit_package": package}})

            stored = s.call(f"storing the function of bundle {name!r}", store_function, idempotent=False)
        made["model_uid"] = str(stored["metadata"]["id"])
        note(model_uid=made["model_uid"])
        crash_point(f"{action}:model-stored")
        details = s.call(f"creating a revision of function {made['model_uid']}",
                         lambda c: c.repository.create_function_revision(made["model_uid"]), idempotent=False)
        made["model_rev"] = str(details["metadata"]["rev"])
        note(model_rev=made["model_rev"])
        crash_point(f"{action}:revision-created")
    except DeployKitError as exc:
        _discard(target, name, made, exc, current)
        raise
    return made


def _discard(target: WatsonTarget, name: str, made: dict[str, Any], cause: DeployKitError,
             current: Deployment | None) -> None:
    """Remove what a failed store or deployment left (function and its deployments, spec, extension).

    If that fails too, raise DeploymentError carrying a record of what exists (see ``WatsonTarget._discard``)."""
    try:
        if made.get("model_uid"):
            target._delete_model_and_its_deployments(str(made["model_uid"]))
        _delete_spec_and_extension(target, made)
    except DeployKitError as cleanup:
        ids = {k: v for k, v in made.items() if v is not None}
        if current is None:
            record = Deployment(name=name, target="watsonml", status="failed", ids=ids)
        else:
            record = Deployment(name=name, target="watsonml", revision=max(current.revisions) + 1, status="failed",
                                url=current.url, ids={**current.ids, **ids, "deployment_uid":
                                                      current.ids.get("deployment_uid")},
                                extra=dict(current.extra))
        raise DeploymentError(
            f"{cause}; removing what it left on Watson (function, software specification, package extension) "
            f"failed too ({cleanup}), so it is recorded with status 'failed': run 'deploykit delete {name} "
            "--target watsonml'", deployment=record) from None


def _delete_spec_and_extension(target: WatsonTarget, ids: dict[str, Any]) -> None:
    s = target.session
    if ids.get("software_spec_uid"):
        spec_id = str(ids["software_spec_uid"])
        s.call(f"deleting software specification {spec_id}", functools.partial(_delete_spec, spec_id), missing_ok=True)
    if ids.get("package_extension_uid"):
        ext_id = str(ids["package_extension_uid"])
        s.call(f"deleting package extension {ext_id}", functools.partial(_delete_extension, ext_id), missing_ok=True)


def _record(target: WatsonTarget, name: str, details: dict[str, Any], made: dict[str, Any],
            keep: dict[str, Any] | None = None) -> Deployment:
    from deploykit_plugins.watsonml.runtime import Runtime

    record = target._record(name, details, str(made["model_uid"]), str(made["model_rev"]),
                            Runtime(ASSET_KIND, str(made["software_spec"])), None, keep)
    record.ids.update({k: made[k] for k in BUNDLE_IDS})
    return record


def _create_deployment(target: WatsonTarget, name: str, made: dict[str, Any]) -> dict[str, Any]:
    """An online deployment of a sync bundle's function, a batch deployment of an async one's."""
    if made["bundle_mode"] != "async":
        return target._create_online(name, str(made["model_uid"]), str(made["model_rev"]))

    def create(c: Any) -> dict[str, Any]:
        names = c.deployments.ConfigurationMetaNames
        meta = {names.NAME: name, names.BATCH: {}, names.HARDWARE_SPEC: {"name": target.settings.batch_hardware_spec},
                names.DESCRIPTION: "async scoring script, deployed by deploykit", names.TAGS: target._tags(name)}
        return c.deployments.create(str(made["model_uid"]), meta, rev_id=str(made["model_rev"]),  # type: ignore[no-any-return]
                                    background_mode=True)

    details: dict[str, Any] = target.session.call(f"creating batch deployment {name!r}", create, idempotent=False)
    target.context.note(deployment_uid=details["metadata"]["id"])
    crash_point(f"{target._action}:deployment-created")
    return details


def deploy_bundle(target: WatsonTarget, artifact: Artifact, name: str) -> Deployment:
    """``WatsonTarget.deploy`` of a bundle: store its revision, start a deployment of the function
    (online for a sync bundle, batch for an async one)."""
    target._action, target._revision = "create", 1
    made = _store(target, name, artifact, None)
    try:
        details = _create_deployment(target, name, made)
    except DeployKitError as exc:
        _discard(target, name, made, exc, None)
        raise
    return _record(target, name, details, made)


def update_bundle(target: WatsonTarget, current: Deployment, artifact: Artifact) -> Deployment:
    """``WatsonTarget.update`` of a bundle: store the next revision and patch the deployment to its function."""
    if not is_function(current):
        raise DeploymentError(
            f"{current.name!r} serves a model on Watson, and a deployment keeps the kind of asset it was created "
            f"with; deploy the scoring script under another name (--name), or 'deploykit delete {current.name}' first")
    mode, was = artifact.extra.get("mode") or "sync", current.ids.get("bundle_mode") or "sync"
    if mode != was:
        raise DeploymentError(
            f"{current.name!r} serves a {was} scoring script on Watson (an {'online' if was == 'sync' else 'batch'} "
            f"deployment), and this one is {mode}; deploy it under another name (--name), or "
            f"'deploykit delete {current.name}' first")
    target._action, target._revision = "update", max(current.revisions) + 1
    dep_id = target._deployment_id(current)
    made = _store(target, current.name, artifact, current)
    alive = target.session.call(f"reading deployment {dep_id}", lambda c: c.deployments.get_details(dep_id),
                                missing_ok=True)
    try:
        if alive is None:
            target.context.progress(f"deployment {dep_id} no longer exists on Watson; creating a new one")
            details = _create_deployment(target, current.name, made)
        else:
            details = target._patch_asset(current.name, dep_id, str(made["model_uid"]), str(made["model_rev"]))
    except DeployKitError as exc:
        _discard(target, current.name, made, exc, current)
        raise
    keep = {k: v for k, v in current.ids.items() if k == "batch_deployment_uid"}
    record = _record(target, current.name, details, made, keep)
    record.url = record.url or current.url
    return record


def refuse_model_over_function(current: Deployment) -> None:
    """A model cannot replace a function in the same Watson deployment: say so and what to do."""
    if is_function(current):
        raise DeploymentError(
            f"{current.name!r} serves a scoring-script bundle (a Python function) on Watson, and a deployment keeps "
            f"the kind of asset it was created with; deploy the model under another name (--name), or "
            f"'deploykit delete {current.name}' first")


# -- delete, reconcile ------------------------------------------------------------------
def delete_parts(target: WatsonTarget, current: Deployment) -> None:
    """Delete the software specifications and package extensions of the record and its history
    (after their functions: a specification in use cannot go first); for a bundle, then sweep
    what a revision that failed its smoke test left (the automatic rollback drops it from the
    history): every function tagged with the name, every spec and extension named after it."""
    records = [current.ids] + [entry.get("ids") or {} for entry in current.history]
    seen: set[tuple[str | None, str | None]] = set()
    for ids in records:
        pair = (ids.get("software_spec_uid"), ids.get("package_extension_uid"))
        if pair != (None, None) and pair not in seen:
            seen.add(pair)
            _delete_spec_and_extension(target, ids)
    if any(ids.get("asset_kind") == ASSET_KIND for ids in records):
        _sweep(target, current.name)


def _sweep(target: WatsonTarget, name: str) -> None:
    from deploykit_plugins.watsonml.target import name_tag

    s = target.session
    for resource in s.tagged("functions", name_tag(name)):
        target._delete_model_and_its_deployments(str(resource["metadata"]["id"]))
    pattern = re.compile(rf"^deploykit-{re.escape(name)}-r\d+-[0-9a-f]{{12}}$")
    for kind, key in (("software_specifications", "software_spec_uid"), ("package_extensions", "package_extension_uid")):
        for resource in s.named(kind, None):
            if pattern.match(str((resource.get("metadata") or {}).get("name") or "")):
                _delete_spec_and_extension(target, {key: resource["metadata"]["asset_id"]})


def parts_made_by(target: WatsonTarget, op: PendingOperation) -> tuple[set[str], set[str], set[str]]:
    """(function ids, software spec ids, package extension ids) an operation made: noted, or found by
    the function tags and the revision's deterministic resource name."""
    from deploykit_plugins.watsonml.target import name_tag, revision_tag

    s = target.session
    functions = {str(op.ids["model_uid"])} if op.ids.get("model_uid") else set()
    specs = {str(op.ids["software_spec_uid"])} if op.ids.get("software_spec_uid") else set()
    extensions = {str(op.ids["package_extension_uid"])} if op.ids.get("package_extension_uid") else set()
    sha = op.planned.get("model_sha256")
    wanted = revision_tag(op.revision)
    for resource in s.tagged("functions", name_tag(op.name)):
        meta = resource.get("metadata") or {}
        custom = (resource.get("entity") or {}).get("custom") or {}
        if wanted in (meta.get("tags") or []) and (sha is None or custom.get("deploykit_sha256") in (None, sha)):
            functions.add(str(meta["id"]))
    if sha:
        label = resource_name(op.name, op.revision, str(sha))
        specs |= {str(r["metadata"]["asset_id"]) for r in s.named("software_specifications", label)}
        extensions |= {str(r["metadata"]["asset_id"]) for r in s.named("package_extensions", label)}
    return functions, specs, extensions


def remove_parts(target: WatsonTarget, op: PendingOperation, current: Deployment | None) -> None:
    """Delete the functions, specs and extensions ``op`` made that ``current`` (or its history) does not use."""
    if op.action == "rollback":
        return
    records = [current.ids] + [h.get("ids") or {} for h in current.history] if current is not None else []
    used = {str(v) for ids in records for k, v in ids.items()
            if k in ("model_uid", "software_spec_uid", "package_extension_uid") and v}
    functions, specs, extensions = parts_made_by(target, op)
    for function_id in sorted(functions - used):
        exists = target.session.call(f"reading function {function_id}", functools.partial(_function_details, function_id),
                                     missing_ok=True)
        if exists:
            target._delete_model_and_its_deployments(function_id)
    for spec_id in sorted(specs - used):
        _delete_spec_and_extension(target, {"software_spec_uid": spec_id})
    for ext_id in sorted(extensions - used):
        _delete_spec_and_extension(target, {"package_extension_uid": ext_id})


def adopted_ids(op: PendingOperation) -> dict[str, Any]:
    """The bundle ids an adopted operation's record carries (empty for a model)."""
    if not op.ids.get("package_extension_uid") and not op.ids.get("software_spec_uid"):
        return {}
    ids = {k: op.ids[k] for k in BUNDLE_IDS if op.ids.get(k)}
    ids["asset_kind"] = ASSET_KIND
    return ids


# -- scoring ----------------------------------------------------------------------------
def score_bundle(target: WatsonTarget, deployment: Deployment, frame: Any, online: Any) -> Predictions:
    """Score a bundle's deployment: ``online()`` (the online scoring call's answer) for a sync
    bundle, one Watson batch job on the batch deployment for an async one."""
    if not is_async(deployment):
        return decode_answer(online())
    from deploykit_plugins.watsonml.batch import run_job

    probe = Deployment.from_dict(deployment.name, deployment.target, deployment.to_dict())
    probe.ids["batch_deployment_uid"] = target._deployment_id(deployment)
    return decode_answer(run_job(target, probe, frame, target.context.timeout).raw)


def decode_answer(body: Any) -> Predictions:
    """The function's ``{"predictions": [{"fields", "values"}]}`` as Predictions whose labels are the
    script's answers (one object per row, ``{"prediction": x}`` for an answer that was not an object)."""
    from deploykit.errors import ScoringError
    from deploykit.payload import Predictions

    blocks = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise ScoringError(f"the bundle's Watson function answered {json.dumps(body)[:120]}, not "
                           '{"predictions": [{"fields", "values"}]}; deploy the bundle again with deploykit')
    labels = [dict(zip(b.get("fields") or [], row)) for b in blocks for row in b.get("values") or []]
    return Predictions(labels, raw=body)


# Watson client calls by id, for ``session.call`` in loops
def _delete_spec(spec_id: str, client: Any) -> Any:
    return client.software_specifications.delete(spec_id)


def _delete_extension(ext_id: str, client: Any) -> Any:
    return client.package_extensions.delete(ext_id)


def _function_details(function_id: str, client: Any) -> Any:
    return client.repository.get_function_details(function_id)
