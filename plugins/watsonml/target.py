"""The watsonml target: IBM Watson Machine Learning through IBM's ibm-watsonx-ai client.

One deployment name is one Watson model asset plus one online deployment. deploy stores the
model (a tar.gz of the pickle), creates model revision 1 and an online deployment pinned to
it; update stores the new content into the same asset, creates the next revision and patches
the deployment's asset to it, so the deployment id and scoring URL never change; rollback
patches the asset back to an earlier revision; delete removes the deployments, then the model
asset. The client's own waits (fixed 5 s sleeps, no timeout) are never used: calls run with
``background_mode=True`` and ``wait_ready`` polls with back-off, a timeout and progress.

A scoring-script bundle is a deployable Python function instead, with the bundle as a package
extension on a software specification of its own (``watsonml.bundle``).

Record ids: ``model_uid``, ``deployment_uid``, ``space_id``, ``model_rev`` (Watson's revision),
``model_type``, ``software_spec`` and, once batch scoring was used, ``batch_deployment_uid``.

Crash safety: each id goes to ``context.note`` the moment Watson returns it, and every model
asset and deployment deploykit creates carries the tags ``deploykit``, ``deploykit-name:<name>``
and ``deploykit-rev:<revision>`` (the model's sha256 is in its ``custom`` metadata), so
``reconcile`` finds a model whose id never came back (a POST whose answer was lost) with
``GET /ml/v4/models?tag.value=...``. Crash points: ``<action>:model-stored``,
``<action>:revision-created``, ``<action>:deployment-created``, ``<action>:deployment-patched``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from deploykit.deployment import Deployment
from deploykit.errors import DeployKitError, DeploymentError, ScoringError
from deploykit.faults import crash_point
from deploykit.target import TargetContext, wait_until
from deploykit_plugins.watsonml import bundle
from deploykit_plugins.watsonml.client import WatsonCallError, WatsonSession
from deploykit_plugins.watsonml.runtime import Runtime, model_archive, resolve_runtime
from deploykit_plugins.watsonml.settings import WatsonSettings

if TYPE_CHECKING:
    import pandas as pd

    from deploykit.artifact import Artifact
    from deploykit.operations import PendingOperation
    from deploykit.payload import Predictions

__all__ = ["STATUSES", "TAG", "WatsonSettings", "WatsonTarget", "name_tag", "revision_tag"]

#: The tag on every model asset and deployment deploykit creates.
TAG = "deploykit"


def name_tag(name: str) -> str:
    """The tag naming the deployment a model asset or Watson deployment belongs to."""
    return f"deploykit-name:{name}"


def revision_tag(revision: int) -> str:
    """The tag naming the deploykit revision that created a model asset or Watson deployment."""
    return f"deploykit-rev:{revision}"

#: Watson deployment states -> deploykit statuses.
STATUSES = {"ready": "ready", "initializing": "pending", "updating": "pending", "failed": "failed"}
_IN_PROGRESS = {"initializing", "updating"}


def _failure(details: dict[str, Any]) -> str:
    errors = ((details.get("entity") or {}).get("status") or {}).get("failure", {}).get("errors") or []
    return "; ".join(str(e.get("message") or e) for e in errors if isinstance(e, dict))


def _online_url(details: dict[str, Any]) -> str | None:
    status = (details.get("entity") or {}).get("status") or {}
    url = (status.get("online_url") or {}).get("url")
    return url or next(iter(status.get("serving_urls") or []), None)


class WatsonTarget:
    """Deployer and Scorer for Watson Machine Learning (IBM Cloud or Cloud Pak for Data)."""

    #: ``score`` on an async bundle sends the rows as the script's input file (a batch job), so deploy smoke-tests it
    smokes_async_bundles = True

    def __init__(self, context: TargetContext) -> None:
        self.context = context
        self.settings: WatsonSettings = context.settings
        self.session = WatsonSession(self.settings, context.progress)
        #: ``create``, ``update`` or ``rollback``: the prefix of this call's crash points
        self._action = "create"
        #: the deploykit revision this call creates (its assets' revision tag)
        self._revision = 1

    # -- helpers --------------------------------------------------------------------------
    def _runtime(self, artifact: Artifact) -> Runtime:
        runtime = resolve_runtime(artifact, self.settings.model_type, self.settings.software_spec)
        if runtime.note:
            self.context.progress(runtime.note)
        return runtime

    def _model_meta(self, client: Any, name: str, artifact: Artifact, runtime: Runtime, spec_id: str,
                    tags: bool = True) -> dict[str, Any]:
        names = client.repository.ModelMetaNames
        custom: dict[str, Any] = {"deploykit_sha256": artifact.sha256, "deploykit_source": artifact.path.name}
        if artifact.classes is not None:
            custom["deploykit_classes"] = artifact.classes
        return {names.NAME: name, names.TYPE: runtime.model_type, names.SOFTWARE_SPEC_ID: spec_id,
                names.DESCRIPTION: f"deploykit: {artifact.path.name} (sha256 {artifact.sha256[:12]})",
                names.CUSTOM: custom, **({names.TAGS: self._tags(name)} if tags else {})}

    def _tags(self, name: str) -> list[str]:
        return [TAG, name_tag(name), revision_tag(self._revision)]

    def _check_space(self, deployment: Deployment) -> None:
        recorded = deployment.ids.get("space_id")
        if recorded and recorded != self.session.space_id:
            raise DeploymentError(
                f"{deployment.name!r} was deployed in Watson space {recorded}, but the watsonml credentials point at "
                f"space {self.session.space_id}; set watsonml.space_id to {recorded}"
            )

    def _deployment_id(self, deployment: Deployment) -> str:
        dep_id = deployment.ids.get("deployment_uid")
        if not dep_id:
            raise DeploymentError(
                f"the record of {deployment.name!r} has no Watson deployment_uid (ids: {deployment.ids}); "
                "delete the record with 'deploykit delete' and deploy again"
            )
        self._check_space(deployment)
        return str(dep_id)

    def _store(self, name: str, artifact: Artifact, runtime: Runtime,
               current: Deployment | None = None) -> tuple[str, str]:
        """Store a new model asset and its first revision; returns (model_uid, rev). Removes it on failure."""
        s = self.session
        spec_id = s.software_spec_id(runtime.software_spec)
        with model_archive(artifact, self.context.state_dir / "watsonml") as archive:
            model_uid: str = s.call(
                f"storing model {name!r} ({runtime.model_type} on {runtime.software_spec})",
                lambda c: c.repository.get_model_id(
                    c.repository.store_model(str(archive), self._model_meta(c, name, artifact, runtime, spec_id))),
                idempotent=False)
        self.context.note(model_uid=model_uid, space_id=s.space_id)
        crash_point(f"{self._action}:model-stored")
        try:
            rev = self._new_revision(model_uid)
        except DeployKitError as exc:
            self._discard(name, model_uid, exc, current)
            raise
        return model_uid, rev

    def _new_revision(self, model_uid: str) -> str:
        details = self.session.call(f"creating a revision of model {model_uid}",
                                    lambda c: c.repository.create_model_revision(model_uid), idempotent=False)
        rev = str(details["metadata"]["rev"])
        self.context.note(model_uid=model_uid, model_rev=rev)
        crash_point(f"{self._action}:revision-created")
        return rev

    def _discard(self, name: str, model_uid: str, cause: DeployKitError, current: Deployment | None = None) -> None:
        """Remove a model asset created by a deploy or update that failed (with any deployment on it).

        If that fails too, raise DeploymentError carrying a record of what exists, which the core
        writes to metadata.yaml: for a create the lone model, for an update the failed next revision
        (the serving one goes to its history, so rollback and delete still work).
        """
        try:
            self._delete_model_and_its_deployments(model_uid)
        except DeployKitError as cleanup:
            if current is None:
                record = Deployment(name=name, target="watsonml", status="failed",
                                    ids={"model_uid": model_uid, "space_id": self.session.space_id})
            else:
                ids = {k: v for k, v in current.ids.items() if k != "model_rev"} | {"model_uid": model_uid}
                record = Deployment(name=name, target="watsonml", revision=max(current.revisions) + 1,
                                    status="failed", url=current.url, ids=ids, extra=dict(current.extra))
            raise DeploymentError(
                f"{cause}; removing the model asset {model_uid} it left on Watson failed too ({cleanup}), so it is "
                f"recorded with status 'failed': run 'deploykit delete {name} --target watsonml'",
                deployment=record,
            ) from None

    def _delete_model_and_its_deployments(self, model_uid: str) -> None:
        s = self.session
        found = s.call(f"listing deployments of model {model_uid}", lambda c: c.deployments.get_details()) or {}
        for resource in found.get("resources", []):
            if (resource.get("entity", {}).get("asset") or {}).get("id") == model_uid:
                dep_id = resource["metadata"]["id"]
                s.call(f"deleting deployment {dep_id}", functools.partial(_delete_deployment, dep_id), missing_ok=True)
        s.call(f"deleting model {model_uid}", lambda c: c.repository.delete(model_uid), missing_ok=True)

    def _record(self, name: str, details: dict[str, Any], model_uid: str, rev: str, runtime: Runtime,
                artifact: Artifact | None, keep: dict[str, Any] | None = None) -> Deployment:
        ids: dict[str, Any] = dict(keep or {})
        ids.update({"model_uid": model_uid, "deployment_uid": details["metadata"]["id"],
                    "space_id": self.session.space_id, "model_rev": rev,
                    "model_type": runtime.model_type, "software_spec": runtime.software_spec})
        state = ((details.get("entity") or {}).get("status") or {}).get("state", "initializing")
        extra = {"classes": artifact.classes} if artifact is not None and artifact.classes is not None else {}
        return Deployment(name=name, target="watsonml", status=STATUSES.get(state, state),
                          url=_online_url(details), ids=ids, extra=extra)

    def _create_online(self, name: str, model_uid: str, rev: str) -> dict[str, Any]:
        def create(c: Any) -> dict[str, Any]:
            names = c.deployments.ConfigurationMetaNames
            meta: dict[str, Any] = {names.NAME: name, names.ONLINE: {},
                                    names.DESCRIPTION: "deployed by deploykit", names.TAGS: self._tags(name)}
            if self.settings.hardware_spec:
                meta[names.HARDWARE_SPEC] = {"name": self.settings.hardware_spec}
            return c.deployments.create(model_uid, meta, rev_id=rev, background_mode=True)  # type: ignore[no-any-return]

        details = self.session.call(f"creating online deployment {name!r}", create, idempotent=False)
        self.context.note(deployment_uid=details["metadata"]["id"])
        crash_point(f"{self._action}:deployment-created")
        return details

    def _patch_asset(self, name: str, dep_id: str, model_uid: str, rev: str) -> dict[str, Any]:
        """Point deployment ``dep_id`` at model ``model_uid`` revision ``rev`` (waits out a change in progress)."""
        def patch(c: Any) -> dict[str, Any]:
            asset = {c.deployments.ConfigurationMetaNames.ASSET: {"id": model_uid, "rev": rev}}
            return c.deployments.update(dep_id, asset, background_mode=True)  # type: ignore[no-any-return]

        what = f"switching deployment {name!r} ({dep_id}) to model {model_uid} revision {rev}"
        try:
            details = self.session.call(what, patch)
        except WatsonCallError as exc:
            if exc.status != 409:
                raise
            self.context.progress(f"deployment {name!r} is still changing; waiting before switching it")
            wait_until(lambda: self._settled(dep_id), timeout=self.context.timeout,
                       what=f"Watson deployment {name!r} to finish its previous change", progress=self.context.progress)
            details = self.session.call(what, patch)
        crash_point(f"{self._action}:deployment-patched")
        return details

    def _settled(self, dep_id: str) -> bool | None:
        details = self.session.call(f"reading deployment {dep_id}", lambda c: c.deployments.get_details(dep_id))
        return True if details["entity"]["status"]["state"] not in _IN_PROGRESS else None

    # -- Deployer -------------------------------------------------------------------------
    def deploy(self, artifact: Artifact, name: str) -> Deployment:
        """Store the model, create revision 1, and start an online deployment of it (not yet awaited).

        A scoring-script bundle becomes a deployable Python function instead (see ``watsonml.bundle``)."""
        if artifact.flavor == "script":
            return bundle.deploy_bundle(self, artifact, name)
        self._action, self._revision = "create", 1
        runtime = self._runtime(artifact)
        model_uid, rev = self._store(name, artifact, runtime)
        try:
            details = self._create_online(name, model_uid, rev)
        except DeployKitError as exc:
            self._discard(name, model_uid, exc)
            raise
        return self._record(name, details, model_uid, rev, runtime, artifact)

    def update(self, current: Deployment, artifact: Artifact) -> Deployment:
        """Store ``artifact`` as the next revision of the same model asset and patch the deployment to it.

        The deployment id and URL stay. A model whose Watson type or runtime changed (a new
        scikit-learn) goes into a new model asset instead, since a stored model's type is fixed.
        A deployment deleted on Watson meanwhile is created again (with a new id and URL).
        A bundle's next revision is a new function (see ``watsonml.bundle``).
        """
        if artifact.flavor == "script":
            return bundle.update_bundle(self, current, artifact)
        bundle.refuse_model_over_function(current)
        self._action, self._revision = "update", max(current.revisions) + 1
        dep_id = self._deployment_id(current)
        runtime = self._runtime(artifact)
        s = self.session
        model_uid = current.ids.get("model_uid")
        stored: dict[str, Any] = (s.call(f"reading model {model_uid}", lambda c: c.repository.get_model_details(model_uid),
                                         missing_ok=True) if model_uid else None) or {}
        spec_id = s.software_spec_id(runtime.software_spec)
        entity = stored.get("entity") or {}
        same_asset = entity.get("type") == runtime.model_type and (entity.get("software_spec") or {}).get("id") == spec_id
        keep = {k: v for k, v in current.ids.items() if k == "batch_deployment_uid"}
        if same_asset:
            assert model_uid is not None
            with model_archive(artifact, self.context.state_dir / "watsonml") as archive:
                s.call(f"uploading the new content of model {model_uid}",
                       lambda c: c.repository.update_model(
                           model_uid, self._model_meta(c, current.name, artifact, runtime, spec_id, tags=False),
                           str(archive)),
                       idempotent=False)
            rev = self._new_revision(model_uid)
        else:
            if entity:
                self.context.progress(f"the model type changes from {entity.get('type')} to "
                                      f"{runtime.model_type}; storing a new model asset")
            model_uid, rev = self._store(current.name, artifact, runtime, current)
        alive = s.call(f"reading deployment {dep_id}", lambda c: c.deployments.get_details(dep_id), missing_ok=True)
        try:
            if alive is None:
                self.context.progress(f"deployment {dep_id} no longer exists on Watson; creating a new one")
                details = self._create_online(current.name, model_uid, rev)
            else:
                details = self._patch_asset(current.name, dep_id, model_uid, rev)
        except DeployKitError as exc:
            if not same_asset:
                self._discard(current.name, model_uid, exc, current)
            raise
        record = self._record(current.name, details, model_uid, rev, runtime, artifact, keep)
        record.url = record.url or current.url
        return record

    def rollback(self, current: Deployment, previous: Deployment) -> Deployment:
        """Patch the deployment back to ``previous``'s model revision (same deployment id and URL)."""
        self._action = "rollback"
        dep_id = self._deployment_id(current)
        model_uid, rev = previous.ids.get("model_uid"), previous.ids.get("model_rev")
        if not model_uid or not rev:
            raise DeploymentError(
                f"revision {previous.revision} of {current.name!r} has no Watson model revision recorded "
                f"(ids: {previous.ids}); deploy that model file again instead of rolling back"
            )
        self.context.note(model_uid=str(model_uid), model_rev=str(rev), deployment_uid=dep_id)
        details = self._patch_asset(current.name, dep_id, str(model_uid), str(rev))
        ids = dict(previous.ids)
        ids.update({"deployment_uid": dep_id, "space_id": self.session.space_id})
        if current.ids.get("batch_deployment_uid"):
            ids["batch_deployment_uid"] = current.ids["batch_deployment_uid"]
        state = details["entity"]["status"].get("state", "updating")
        back = Deployment(name=current.name, target="watsonml", revision=previous.revision,
                          status=STATUSES.get(state, state), url=_online_url(details) or current.url, ids=ids)
        classes = self._classes_of(str(model_uid), str(rev))
        if classes is not None:
            back.extra["classes"] = classes
        return back

    def _classes_of(self, model_uid: str, rev: str) -> list[Any] | None:
        """The class labels deploykit stored with a model revision (None if unknown)."""
        try:
            details = self.session.call(
                f"reading model {model_uid} revision {rev}",
                lambda c: c.repository.get_model_revision_details(model_uid, rev), missing_ok=True)
        except DeployKitError:
            return None
        details = details or {}
        if isinstance(details.get("resources"), list):  # the client answers some revision reads as a list
            details = details["resources"][0] if details["resources"] else {}
        custom = (details.get("entity") or {}).get("custom") or {}
        return custom.get("deploykit_classes")

    def wait_ready(self, deployment: Deployment, timeout: float) -> Deployment:
        """Poll the deployment (back-off, ``timeout``) until it serves the recorded model revision.

        A failed create raises DeploymentError with Watson's message. A failed update, which
        Watson reverts to the previous revision, raises too, so the core rolls back the record.
        """
        dep_id = self._deployment_id(deployment)
        want = (deployment.ids.get("model_uid"), deployment.ids.get("model_rev"))
        seen: list[str] = []

        def check() -> dict[str, Any] | None:
            details: dict[str, Any] = self.session.call(f"checking deployment {deployment.name!r}",
                                                        lambda c: c.deployments.get_details(dep_id))
            entity = details.get("entity") or {}
            state = (entity.get("status") or {}).get("state", "")
            if not seen or seen[-1] != state:
                seen.append(state)
                self.context.progress(f"Watson deployment {deployment.name!r}: {state}")
            if state == "failed":
                raise DeploymentError(
                    f"Watson could not start deployment {deployment.name!r} ({dep_id}): "
                    f"{_failure(details) or 'no reason given'}; fix the model or its runtime "
                    "(watsonml.model_type / software_spec) and deploy again"
                )
            if state != "ready":
                return None
            asset = entity.get("asset") or {}
            serving = (asset.get("id"), str(asset["rev"]) if asset.get("rev") is not None else None)
            if want[1] is not None and serving != want:
                reason = _failure(details)
                if not reason:
                    return None  # the switch has not started yet
                raise DeploymentError(
                    f"Watson could not switch deployment {deployment.name!r} ({dep_id}) to model {want[0]} "
                    f"revision {want[1]} ({reason}); it kept serving revision {serving[1]}. Fix the model and "
                    "deploy again"
                )
            return details

        details = wait_until(check, timeout=timeout, what=f"Watson deployment {deployment.name!r} ({dep_id})",
                             progress=self.context.progress)
        deployment.status = "ready"
        deployment.url = _online_url(details) or deployment.url
        return deployment

    def delete(self, current: Deployment) -> None:
        """Delete the online (and batch) deployment, then every model or function asset this record used
        (and a bundle's software specifications and package extensions)."""
        s = self.session
        if current.ids.get("space_id"):
            self._check_space(current)
        for key in ("deployment_uid", "batch_deployment_uid"):
            dep_id = current.ids.get(key)
            if dep_id:
                s.call(f"deleting deployment {dep_id}", functools.partial(_delete_deployment, dep_id), missing_ok=True)
        models: list[str] = []
        for ids in [current.ids] + [entry.get("ids") or {} for entry in current.history]:
            if ids.get("model_uid") and ids["model_uid"] not in models:
                models.append(str(ids["model_uid"]))
        for model_uid in models:
            s.call(f"deleting model {model_uid}", functools.partial(_delete_model, model_uid), missing_ok=True)
        bundle.delete_parts(self, current)

    def get(self, current: Deployment) -> Deployment:
        """The record with its status from one GET of the deployment.

        ``ready``/``pending``/``failed`` from Watson's state; ``missing`` if Watson no longer has it;
        ``changed`` if it serves another model revision than recorded (changed outside deploykit).
        """
        dep_id = self._deployment_id(current)
        refreshed = Deployment.from_dict(current.name, current.target, current.to_dict())
        details = self.session.call(f"reading deployment {current.name!r}", lambda c: c.deployments.get_details(dep_id),
                                    missing_ok=True)
        if details is None:
            refreshed.status = "missing"
            return refreshed
        entity = details.get("entity") or {}
        state = (entity.get("status") or {}).get("state", "")
        refreshed.status = STATUSES.get(state, state or "unknown")
        refreshed.url = _online_url(details) or refreshed.url
        asset = entity.get("asset") or {}
        rev = str(asset["rev"]) if asset.get("rev") is not None else None
        refreshed.ids.setdefault("space_id", self.session.space_id)
        if "model_rev" not in current.ids:  # a record adopted from an older script's flat keys
            refreshed.ids.update({"model_uid": asset.get("id") or refreshed.ids.get("model_uid"), "model_rev": rev})
        elif (asset.get("id"), rev) != (current.ids.get("model_uid"), str(current.ids.get("model_rev"))):
            refreshed.status = "changed"
        return refreshed

    def list(self) -> list[Deployment]:
        """Every deployment in the space (one call), as records built from Watson's state."""
        details = self.session.call("listing deployments", lambda c: c.deployments.get_details()) or {}
        out = []
        for resource in details.get("resources", []):
            entity = resource.get("entity") or {}
            asset = entity.get("asset") or {}
            state = (entity.get("status") or {}).get("state", "")
            kind = "batch" if "batch" in entity else "online"
            out.append(Deployment(
                name=resource["metadata"].get("name", resource["metadata"]["id"]), target="watsonml",
                status=STATUSES.get(state, state), url=_online_url(resource),
                ids={"deployment_uid": resource["metadata"]["id"], "model_uid": asset.get("id"),
                     "model_rev": asset.get("rev"), "space_id": self.session.space_id, "kind": kind}))
        return out

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, operation: PendingOperation, current: Deployment | None) -> Deployment | None:
        """Adopt what an interrupted create/update/rollback made when a deployment is ready and serves
        the operation's model revision; else remove it: delete the deployments, then the model assets,
        the operation created and ``current`` does not use, and switch ``current``'s deployment back to
        its own revision if the operation had moved it. Found by ``operation.ids`` or, for an id never
        received, by the tags ``deploykit-name:<name>`` + ``deploykit-rev:<revision>`` (and the sha256
        in the model's custom metadata). Idempotent."""
        op = operation
        if op.action == "delete":
            return None  # a delete creates nothing; running it again finishes it
        cur = current.ids if current is not None else {}
        if cur.get("space_id"):
            self._check_space(current)  # type: ignore[arg-type]
        used_models = {str(e["model_uid"]) for e in [cur] + [h.get("ids") or {} for h in
                       (current.history if current is not None else [])] if e.get("model_uid")}
        used_deps = {str(cur[k]) for k in ("deployment_uid", "batch_deployment_uid") if cur.get(k)}
        models, deps = self._made_by(op)
        adopted = self._adopt(op, current, deps - used_deps)
        if adopted is not None:
            for dep_id in deps - used_deps - {adopted.ids["deployment_uid"]}:
                self._delete_deployment(dep_id)
            return adopted
        self.context.progress(f"removing what the interrupted {op.action} of {op.name!r} created on Watson")
        live = cur.get("deployment_uid")
        if current is not None and live and cur.get("model_uid") and cur.get("model_rev"):
            self._switch_back(current, str(live))
        for made in deps - used_deps:
            self._delete_deployment(made)
        if op.action != "rollback":
            for model_uid in models - used_models:
                exists = self.session.call(f"reading model {model_uid}",
                                           functools.partial(_model_details, model_uid), missing_ok=True)
                if exists:  # a noted id a previous reconcile already removed is no error
                    self._delete_model_and_its_deployments(model_uid)
        bundle.remove_parts(self, op, current)
        return None

    def _made_by(self, op: PendingOperation) -> tuple[set[str], set[str]]:
        """(model asset ids, deployment ids) the operation created: noted, or found by its tags."""
        wanted = revision_tag(op.revision)
        sha = op.planned.get("model_sha256")
        # noted ids may be current's own (an update's asset, its deployment): the caller subtracts those
        models = {str(op.ids["model_uid"])} if op.ids.get("model_uid") else set()
        deps = {str(op.ids["deployment_uid"])} if op.ids.get("deployment_uid") else set()
        for resource in self.session.tagged("models", name_tag(op.name)):
            meta = resource.get("metadata") or {}
            custom = (resource.get("entity") or {}).get("custom") or {}
            if wanted in (meta.get("tags") or []) and (sha is None or custom.get("deploykit_sha256") in (None, sha)):
                models.add(str(meta["id"]))
        for resource in self.session.tagged("deployments", name_tag(op.name)):
            meta, entity = resource.get("metadata") or {}, resource.get("entity") or {}
            if wanted in (entity.get("tags") or meta.get("tags") or []):
                deps.add(str(meta["id"]))
        return models, deps

    def _adopt(self, op: PendingOperation, current: Deployment | None, made: set[str]) -> Deployment | None:
        model_uid, rev = op.ids.get("model_uid"), op.ids.get("model_rev")
        if not model_uid or not rev:
            return None
        cur = current.ids if current is not None else {}
        for dep_id in sorted(made) + ([str(cur["deployment_uid"])] if cur.get("deployment_uid") else []):
            details = self.session.call(f"reading deployment {dep_id}", functools.partial(_deployment_details, dep_id),
                                        missing_ok=True)
            entity = (details or {}).get("entity") or {}
            asset = entity.get("asset") or {}
            if (entity.get("status") or {}).get("state") != "ready" or \
                    (asset.get("id"), str(asset.get("rev"))) != (str(model_uid), str(rev)):
                continue
            stored = self.session.call(f"reading model {model_uid}",
                                       lambda c: c.repository.get_model_details(str(model_uid)), missing_ok=True) or {}
            mentity = stored.get("entity") or {}
            runtime = Runtime(str(mentity.get("type") or cur.get("model_type") or ""),
                              str((mentity.get("software_spec") or {}).get("name") or cur.get("software_spec") or ""))
            keep = {k: v for k, v in cur.items() if k == "batch_deployment_uid"} | bundle.adopted_ids(op)
            if keep.get("asset_kind") == bundle.ASSET_KIND:
                runtime = Runtime(bundle.ASSET_KIND, str(cur.get("software_spec") or self.settings.software_spec
                                                         or bundle.DEFAULT_BASE_SPEC))
            record = self._record(op.name, details or {}, str(model_uid), str(rev), runtime, None, keep)
            record.status, record.revision = "ready", op.revision
            record.url = record.url or (current.url if current is not None else None)
            if op.planned.get("model_sha256"):
                record.model_sha256 = str(op.planned["model_sha256"])
            classes = self._classes_of(str(model_uid), str(rev))
            if classes is not None:
                record.extra["classes"] = classes
            self.context.progress(f"adopted revision {op.revision} of {op.name!r}: deployment {dep_id} serves "
                                  f"model {model_uid} revision {rev}")
            return record
        return None

    def _switch_back(self, current: Deployment, dep_id: str) -> None:
        """Point ``current``'s deployment at its own model revision again if something else moved it."""
        details = self.session.call(f"reading deployment {dep_id}", lambda c: c.deployments.get_details(dep_id),
                                    missing_ok=True)
        if details is None:
            return
        asset = (details.get("entity") or {}).get("asset") or {}
        want = (str(current.ids["model_uid"]), str(current.ids["model_rev"]))
        if (asset.get("id"), str(asset.get("rev"))) == want:
            return
        self.context.progress(f"switching deployment {dep_id} back to model {want[0]} revision {want[1]}")
        self._patch_asset(current.name, dep_id, *want)
        wait_until(lambda: self._settled(dep_id), timeout=self.context.timeout,
                   what=f"Watson deployment {current.name!r} to switch back", progress=self.context.progress)

    def _delete_deployment(self, dep_id: str) -> None:
        self.session.call(f"deleting deployment {dep_id}", lambda c: c.deployments.delete(dep_id), missing_ok=True)

    # -- Scorer ---------------------------------------------------------------------------
    def score(self, deployment: Deployment, frame: pd.DataFrame) -> Predictions:
        """Send the rows as Watson ``input_data`` to the deployment and decode the answer (an async
        bundle's rows go to one Watson batch job on its batch deployment)."""
        from deploykit.payload import Predictions, encode

        dep_id = self._deployment_id(deployment)
        columns = deployment.columns
        if columns and set(columns) == {str(c) for c in frame.columns} and list(frame.columns) != columns:
            frame = frame[columns]
        body = encode(frame, "input_data")
        hint = (f"send rows with the model's columns ({', '.join(columns)})" if columns else
                "send rows with the columns the model was trained on")
        hint += f"; if Watson says it is not ready, see 'deploykit status {deployment.name}'"
        def online() -> Any:
            return self.session.call(f"scoring {len(frame)} row(s) on {deployment.name!r}",
                                     lambda c: c.deployments.score(dep_id, body), error=ScoringError, hint=hint)

        if bundle.is_function(deployment):
            return bundle.score_bundle(self, deployment, frame, online)
        result = online()
        predictions = Predictions.decode(result)
        if predictions.probabilities is not None and predictions.classes is None:
            predictions.classes = deployment.extra.get("classes")
        return predictions

    # -- batch ----------------------------------------------------------------------------
    def ensure_batch_deployment(self, current: Deployment, timeout: float) -> str:
        """The id of a ready batch deployment serving ``current``'s model revision (created or switched)."""
        from deploykit_plugins.watsonml.batch import ensure_batch_deployment

        return ensure_batch_deployment(self, current, timeout)

    def score_batch(self, deployment: Deployment, frame: pd.DataFrame, timeout: float) -> Predictions:
        """BatchScorer: score ``frame`` as one Watson batch job on ``deployment``'s batch deployment
        (created or switched to the recorded revision first; its id is set in
        ``deployment.ids["batch_deployment_uid"]`` for the caller to record); wait up to ``timeout``."""
        from deploykit_plugins.watsonml.batch import score_on_batch_deployment

        return score_on_batch_deployment(self, deployment, frame, timeout)


# Watson client calls by id, for ``session.call`` in loops (a lambda would capture the loop variable)
def _delete_deployment(dep_id: str, client: Any) -> Any:
    return client.deployments.delete(dep_id)


def _delete_model(model_uid: str, client: Any) -> Any:
    return client.repository.delete(model_uid)


def _model_details(model_uid: str, client: Any) -> Any:
    return client.repository.get_model_details(model_uid)


def _deployment_details(dep_id: str, client: Any) -> Any:
    return client.deployments.get_details(dep_id)
