"""The ``deploykit`` command line: deploy, score, jobs, status, drift, snippet, list, rollback, delete, reconcile, serve, targets.

Exit codes: 0 success, 1 a deploykit failure (the message says what and how to fix it),
2 bad usage (and ``drift`` with nothing to compare), 3 ``drift`` found a significant shift.
``--json`` prints one JSON object on stdout, also for every failure
(``{"error": ..., "type": ...}``): a DeployKitError, a usage error, and an unexpected exception
(a bug; its traceback goes to stderr only with ``DEPLOYKIT_DEBUG=1``), so a CI step can act on it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
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


def _fail(message: str, kind: str, as_json: bool, code: int = 1) -> None:
    """Report a failure as one JSON object on stdout (``--json``) or one line on stderr, and exit."""
    if as_json:
        click.echo(json.dumps({"error": message, "type": kind}, default=str))
    else:
        click.echo(f"deploykit: error: {message}", err=True)
    sys.exit(code)


def _handle(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn DeployKitError into exit 1 with its message (or a JSON error object); an unexpected
    exception likewise, never a traceback on stdout."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return func(*args, **kwargs)
        except DeployKitError as exc:
            _fail(str(exc), type(exc).__name__, as_json)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors and exits keep their meaning
        except Exception as exc:  # a bug in deploykit or a plugin: still one clear answer
            if os.environ.get("DEPLOYKIT_DEBUG"):
                traceback.print_exc(file=sys.stderr)
            _fail(f"unexpected {type(exc).__name__}: {exc} (a bug in deploykit or a plugin; run again with "
                  "DEPLOYKIT_DEBUG=1 for the traceback, and report it)", type(exc).__name__, as_json)
    return wrapper


def _state_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--metadata", type=click.Path(dir_okay=False), default=None,
                        help="State file [default: ./metadata.yaml].")(func)
    func = click.option("--credentials", type=click.Path(dir_okay=False), default=None,
                        help="Credentials file [default: ./credentials.yaml if present, "
                             "else DEPLOYKIT_<TARGET>_<KEY> env vars].")(func)
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

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Click's main; with ``--json`` a usage error is one JSON object on stdout too (exit 2)."""
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or "--json" not in argv:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(argv, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            _fail(exc.format_message(), type(exc).__name__, True, exc.exit_code)
        except click.exceptions.Abort:
            _fail("aborted", "Abort", True)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_PluginCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deploykit")
def cli() -> None:
    """Deploy a fitted model to any platform through one interface, and score it with any payload."""
    from deploykit.faults import arm_timer

    arm_timer()  # the crash tests' timed kill (DEPLOYKIT_CRASH_AFTER_MS); nothing when unset


@cli.command()
@click.argument("model")
@click.option("--target", "-t", default="local", show_default=True, help="Where to deploy ('deploykit targets' lists them).")
@click.option("--name", "-n", default=None, help="Deployment name [default: the model file name without suffix].")
@click.option("--schema", type=click.Path(dir_okay=False), default=None, help="schema.json with the input columns.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait until the deployment serves.")
@click.option("--force", is_flag=True, help="Deploy a new revision even if the same model already serves.")
@click.option("--trust", "trust", multiple=True, metavar="TYPE",
              help="A type a skops model file may hold that skops does not trust by default (repeatable); "
                   "the error for an untrusted file lists them.")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="Training data (CSV or Parquet): store its per-feature profile for 'deploykit drift'.")
@click.option("--model-file", type=click.Path(dir_okay=False), default=None,
              help="Script: the model file it loads (its name is in $modelFileName).")
@click.option("--extra", multiple=True, type=click.Path(dir_okay=False),
              help="Script: another file beside it (a second pickle, a helper module); repeatable.")
@click.option("--requirements", type=click.Path(dir_okay=False), default=None,
              help="Script: requirements.txt its serving environment is built from.")
@click.option("--env", "env_file", type=click.Path(dir_okay=False), default=None,
              help="Script: an env file (KEY=value lines) whose variables it reads; the values stay in a 0600 file.")
@click.option("--mode", type=click.Choice(["sync", "async"]), default=None,
              help="Script: sync (a request in, JSON out) or async (a file in, a file out) [default: sync].")
@click.option("--preprocess", default=None, metavar="FILE.py:FUNC",
              help="Script: a function run before score (process for sync, build_df for async).")
@_state_options
@_json_option
@_handle
def deploy(model: str, target: str, name: str | None, schema: str | None, timeout: float, force: bool,
           trust: tuple[str, ...], reference: str | None, model_file: str | None, extra: tuple[str, ...],
           requirements: str | None, env_file: str | None, mode: str | None, preprocess: str | None,
           credentials: str | None, metadata: str | None, as_json: bool) -> None:
    """Deploy MODEL: create, update, or no-op.

    MODEL is a joblib/pickle or skops file, an MLflow model dir or models:/NAME@ALIAS; or a
    scoring script, FILE.py:FUNCTION (deploykit deploy app.py:score --model-file model.pkl ...)
    or a folder holding a deploykit.yaml that names the same files.

    Loading a joblib/pickle file runs code it names: deploy only files you trust, or skops files."""
    from deploykit.lifecycle import deploy as run
    from deploykit.lifecycle import smoke_test_skipped

    script_options = {"--model-file": model_file, "--extra": extra, "--requirements": requirements,
                      "--env": env_file, "--mode": mode, "--preprocess": preprocess}
    source = _deploy_source(model, {flag: value for flag, value in script_options.items() if value},
                            schema, trust)
    frame = None
    if reference is not None:  # read before deploying, so a bad file fails before anything changes
        from deploykit.drift import read_reference

        frame = read_reference(reference)
    artifact = None
    if source is not None:  # a bundle is staged here, so the smoke-test note below knows what it holds
        from deploykit.artifact import load_artifact

        artifact = load_artifact(source)
    dep = run(artifact if artifact is not None else model, target=target, name=name, credentials=credentials,
              metadata=metadata, schema=None if artifact is not None else schema, timeout=timeout, force=force,
              trusted_types=trust)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    skipped = None
    if artifact is not None and dep.action in ("created", "updated"):
        from deploykit.plugins import get_registry

        skipped = smoke_test_skipped(artifact, get_registry().info(dep.target).load())
    if frame is not None:
        from deploykit.drift import save_profile
        from deploykit.errors import DriftError
        from deploykit.metadata import DEFAULT_PATH, MetadataStore

        try:
            save_profile(MetadataStore(metadata or DEFAULT_PATH).state_dir, dep.name, frame, dep.columns)
        except DriftError as exc:
            raise DriftError(f"{dep.name} revision {dep.revision} is deployed, but its reference profile was not "
                             f"stored: {exc}") from None

    def human() -> None:
        _describe(dep)
        if skipped:
            click.echo(f"smoke test skipped: {skipped}", err=True)

    _emit({**dep.summary(), **({"smoke_test": f"skipped: {skipped}"} if skipped else {})}, as_json, human)


def _deploy_source(model: str, script_options: dict[str, Any], schema: str | None, trust: tuple[str, ...]) -> Any:
    """What ``deploy`` loads for MODEL: a Script (FILE.py:FUNCTION with the script options), the
    folder (holding deploykit.yaml), or None for a model file. Script options with a model file,
    and options a bundle folder's deploykit.yaml names itself, are usage errors saying what to do."""
    from pathlib import Path

    from deploykit.bundle import MANIFEST, Script, is_bundle

    flags = ", ".join(script_options)
    if not is_bundle(model):
        if script_options:
            kind = "a folder without a deploykit.yaml" if Path(model).is_dir() else \
                "a script file without its function" if model.endswith(".py") else "a model file"
            raise click.UsageError(
                f"{flags} {'is' if len(script_options) == 1 else 'are'} for a scoring script, but MODEL {model!r} is "
                f"{kind}; name the script and its function (deploykit deploy app.py:score --model-file model.pkl "
                f"...), or a folder holding a {MANIFEST}, or drop {flags} to deploy a model file")
        return None
    if trust:
        raise click.UsageError(f"--trust is for skops model files, but MODEL {model!r} is a scoring script; drop it")
    if Path(model).expanduser().is_dir():
        given = [*script_options, *(["--schema"] if schema else [])]
        if given:
            raise click.UsageError(
                f"MODEL {model!r} is a folder whose {MANIFEST} names the bundle's files, so {', '.join(given)} "
                f"cannot be given too; put them in {str(Path(model) / MANIFEST)!r} (keys model_file, extra, "
                "requirements, env, schema, mode, preprocess)")
        return model
    return Script(model, script_options.get("--model-file"), list(script_options.get("--extra", ())),
                  script_options.get("--requirements"), script_options.get("--env"), schema,
                  script_options.get("--mode") or "sync", script_options.get("--preprocess"))


@cli.command()
@click.argument("name")
@click.argument("data", required=False, default="-")
@click.option("--async", "asynchronous", is_flag=True,
              help="Submit DATA (a CSV, Parquet or JSON Lines file) as an async job; prints its id.")
@click.option("--wait", is_flag=True, help="With --async: wait until the job has finished.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="With --async --wait: write the job's output file here.")
@click.option("--job-id", default=None, help="With --async: submit under this id (a retried submit never runs twice).")
@click.option("--timeout", type=float, default=3600, show_default=True, help="With --wait: seconds to wait.")
@_target_option
@_state_options
@_json_option
@_handle
def score(name: str, data: str, asynchronous: bool, wait: bool, output: str | None, job_id: str | None,
          timeout: float, target: str | None, credentials: str | None, metadata: str | None, as_json: bool) -> None:
    """Score DATA (a JSON or CSV file, or - for stdin; any payload shape) on the deployment NAME;
    with --async, submit a file as a job instead ('deploykit jobs NAME' lists them)."""
    from pathlib import Path

    from deploykit.errors import PayloadError
    from deploykit.lifecycle import score as run

    if not asynchronous and (wait or output or job_id):
        raise click.UsageError("--wait, --output and --job-id go with --async")
    if asynchronous:
        _score_async(name, data, wait, output, job_id, timeout, target, credentials, metadata, as_json)
        return
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


def _score_async(name: str, data: str, wait: bool, output: str | None, job_id: str | None, timeout: float,
                 target: str | None, credentials: str | None, metadata: str | None, as_json: bool) -> None:
    from deploykit.errors import JobError
    from deploykit.job import submit

    if data == "-":
        raise click.UsageError("--async needs a file (CSV, Parquet or JSON Lines), not stdin")
    if output and not wait:
        raise click.UsageError("--output needs --wait (or fetch it later: deploykit jobs result NAME JOB_ID -o FILE)")
    job = submit(name, data, target=target, job_id=job_id, credentials=credentials, metadata=metadata)
    doc = job.document
    if wait:
        try:
            doc = job.wait(timeout=timeout)
        except JobError:
            if as_json:
                doc = job.document
                _fail(f"job {job.id} {doc.get('status')}: {doc.get('error')}", "JobError", True)
            raise
        if output:
            job.result(output)
            doc = {**doc, "output_file": output}

    def human() -> None:
        if not wait:
            click.echo(f"{job.id} {doc['status']} (deploykit jobs {name}; deploykit jobs result {name} {job.id} -o FILE)")
            return
        rows = f", {doc.get('rows_out')} rows" if doc.get("rows_out") is not None else ""
        where = f", written to {output}" if output else f" (deploykit jobs result {name} {job.id} -o FILE)"
        click.echo(f"{job.id} succeeded{rows}{where}")

    _emit(doc, as_json, human)


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("words", nargs=-1, required=True, metavar="NAME | result NAME JOB_ID | cancel NAME JOB_ID | "
                                                          "status NAME JOB_ID")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="With result: the file to write.")
@_target_option
@_state_options
@_json_option
@_handle
def jobs(words: tuple[str, ...], output: str | None, target: str | None, credentials: str | None,
         metadata: str | None, as_json: bool) -> None:
    """The async jobs of NAME; 'result NAME JOB_ID -o FILE' downloads one's output, 'cancel NAME JOB_ID'
    cancels (or removes a finished one), 'status NAME JOB_ID' shows one."""
    from deploykit.job import job as open_job
    from deploykit.job import jobs as list_jobs

    if len(words) == 1:
        name = words[0]
        found = list_jobs(name, target=target, credentials=credentials, metadata=metadata)

        def table() -> None:
            if not found:
                click.echo(f"no jobs for {name}")
            for doc in found:
                rows = "" if doc.get("rows_out") is None else f"  {doc['rows_out']} rows"
                error = f"  {doc['error']}" if doc.get("error") else ""
                click.echo(f"{doc['id']}  {doc['status']:<9}  {doc['created_at']}{rows}{error}")

        _emit({"name": name, "jobs": found}, as_json, table)
        return
    if len(words) != 3 or words[0] not in ("result", "cancel", "status"):
        raise click.UsageError(f"'deploykit jobs {' '.join(words)}' is not a jobs command; use 'deploykit jobs NAME', "
                               "'deploykit jobs result NAME JOB_ID -o FILE', 'deploykit jobs cancel NAME JOB_ID' or "
                               "'deploykit jobs status NAME JOB_ID'")
    action, name, job_id = words
    job = open_job(name, job_id, target=target, credentials=credentials, metadata=metadata)
    if action == "result":
        if not output:
            raise click.UsageError("'deploykit jobs result' needs -o FILE (where to write the output file)")
        job.result(output)
        _emit({"id": job_id, "output_file": output}, as_json, lambda: click.echo(f"{job_id}: written to {output}"))
    elif action == "cancel":
        doc = job.cancel()
        _emit(doc, as_json, lambda: click.echo(f"{job_id}: {doc['status']}"))
    else:
        doc = job.status()
        _emit(doc, as_json, lambda: click.echo(f"{job_id}: {doc['status']}"
                                               + (f" ({doc['error']})" if doc.get("error") else "")))


@cli.command()
@click.argument("name")
@_target_option
@_state_options
@_json_option
@_handle
def status(name: str, target: str | None, credentials: str | None, metadata: str | None, as_json: bool) -> None:
    """Show NAME's recorded deployment with its live status, its pending operations and the latest reconcile."""
    from deploykit.errors import NotDeployedError
    from deploykit.lifecycle import status as run
    from deploykit.metadata import DEFAULT_PATH, MetadataStore

    store = MetadataStore(metadata if metadata is not None else DEFAULT_PATH)
    try:
        dep = run(name, target=target, credentials=credentials, metadata=metadata)
    except NotDeployedError:
        pending = store.pending(name, target)
        if not pending:
            raise
        # an interrupted create: no record yet, only its intent
        def interrupted() -> None:
            for op in pending:
                click.echo(f"{name}: {op.describe()}")

        _emit({"name": name, "target": pending[0].target, "status": "pending",
               "pending": [op.summary() for op in pending], "reconciled": None}, as_json, interrupted)
        sys.exit(1)
    pending = store.pending(dep.name, dep.target)
    notes = store.reconciliations(dep.name, dep.target)
    latest = notes[-1].to_dict() if notes else dep.reconciled
    from deploykit.monitoring import drift_status

    live, drifted = _live(dep, credentials, store.state_dir), drift_status(store.state_dir, dep.name)

    def human() -> None:
        _describe(dep)
        if dep.status != "ready" and dep.ids.get("unhealthy"):
            click.echo(f"  why: {dep.ids['unhealthy']}")
        for op in pending:
            click.echo(f"  {op.describe()}")
        if notes:
            click.echo(f"  {notes[-1].describe()}")
        if live:
            click.echo(f"  live (since the server started): {live['requests']} scoring requests, {live['rejected']} "
                       f"rejected (4xx), {live['errors']} errors (5xx), p50 {live['p50_ms']} ms, p99 {live['p99_ms']} ms")
        if drifted:
            shifted = f" ({', '.join(drifted['significant'])})" if drifted["significant"] else ""
            click.echo(f"  drift: {drifted['status']}{shifted}, PSI average {drifted['psi_average']} "
                       f"over {drifted['n']} logged rows")

    _emit({**dep.summary(), "pending": [op.summary() for op in pending], "reconciled": latest, "live": live,
           "drift": drifted}, as_json, human)
    if dep.status != "ready":
        sys.exit(1)


@cli.command()
@click.argument("name")
@click.option("--since", default=None, help="Only inputs logged from this date or time (ISO 8601, UTC).")
@click.option("--period", type=click.Choice(["day", "week", "month"]), default=None,
              help="PSI per period [default: one period over every logged row].")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML report (a table, a chart per feature) to this file.")
@click.option("--inputs", type=click.Path(file_okay=False), default=None,
              help="Folder of the logged inputs [default: .deploykit/input-logs/NAME].")
@click.option("--min-rows", type=int, default=100, show_default=True,
              help="Periods with fewer rows are 'insufficient data'.")
@click.option("--moderate", type=float, default=0.1, show_default=True, help="PSI from which a shift is moderate.")
@click.option("--significant", type=float, default=0.25, show_default=True,
              help="PSI from which a shift is significant (exit code 3).")
@_target_option
@click.option("--credentials", "-c", type=click.Path(dir_okay=False), default=None,
              help="Credentials file, for a target whose platform keeps the log (SageMaker's data capture).")
@click.option("--metadata", type=click.Path(dir_okay=False), default=None, help="State file [default: ./metadata.yaml].")
@_json_option
@_handle
def drift(name: str, since: str | None, period: str | None, html_file: str | None, inputs: str | None,
          min_rows: int, moderate: float, significant: float, target: str | None, credentials: str | None,
          metadata: str | None, as_json: bool) -> None:
    """PSI of NAME's logged inputs against its reference profile, per feature (and period).

    Exit codes: 0 no significant shift, 3 a feature shifted significantly in the latest period,
    2 nothing to compare (no profile: redeploy with --reference; no logged inputs: set local.log_inputs).
    The logged inputs are the local server's (``.deploykit/input-logs/NAME``, or --inputs), or the
    platform's own log where the target keeps one (SageMaker's data capture in S3)."""
    from pathlib import Path

    from deploykit import drift as psi
    from deploykit.errors import DriftError
    from deploykit.metadata import DEFAULT_PATH, MetadataStore

    store = MetadataStore(metadata or DEFAULT_PATH)
    state_dir = store.state_dir
    try:
        profile = psi.load_profile(state_dir, name)
        logged = None
        if inputs is None and store.read().find(name, target) is not None:
            from deploykit.lifecycle import logged_inputs

            logged = logged_inputs(name, target=target, credentials=credentials, metadata=store.path, since=since)
        if logged is None:
            logged = psi.read_logged_inputs(Path(inputs) if inputs else psi.inputs_dir(state_dir, name), since)
        report = psi.compute(profile, logged, period, min_rows, moderate, significant)
    except DriftError as exc:
        _fail(str(exc), type(exc).__name__, as_json, code=2)
    if html_file:
        Path(html_file).write_text(psi.html_report(report, profile, f"deploykit drift: {name}"), encoding="utf-8")

    def human() -> None:
        for row in report.rows:
            label = "PSI average" if row["feature"] == psi.AVERAGE else row["feature"]
            click.echo(f"{row['period_start'][:19]}  {label:<24} {row['psi']:>8.4f}  {row['status']}  (n={row['n']})")
        if html_file:
            click.echo(f"report written to {html_file}")

    _emit(report.to_dict(), as_json, human)
    if report.significant:
        sys.exit(3)


@cli.command()
@click.argument("name")
@click.option("--lang", "-l", type=click.Choice(["curl", "python", "js", "http"]), default="curl", show_default=True,
              help="Language of the client code.")
@click.option("--async", "asynchronous", is_flag=True,
              help="Code that uploads a file as an async job (local /jobs), waits and downloads the result.")
@_target_option
@click.option("--metadata", type=click.Path(dir_okay=False), default=None, help="State file [default: ./metadata.yaml].")
@_handle
def snippet(name: str, lang: str, asynchronous: bool, target: str | None, metadata: str | None) -> None:
    """Print client code that scores NAME's example row: its real URL and protocol, the token from $DEPLOYKIT_TOKEN."""
    from deploykit import snippets
    from deploykit.metadata import DEFAULT_PATH, MetadataStore

    store = MetadataStore(metadata or DEFAULT_PATH)
    dep = store.read().get(name, target)
    click.echo(snippets.snippet(dep, lang, snippets.example_row(dep, store.state_dir), asynchronous=asynchronous),
               nl=False)


def _live(dep: Any, credentials: str | None, state_dir: Any) -> dict[str, Any] | None:
    """The local server's live figures from its /metrics, or None when they cannot be had (another
    target, metrics off, not serving)."""
    if dep.target != "local" or not dep.url or dep.status != "ready":
        return None
    from deploykit.lifecycle import open_target
    from deploykit.monitoring import live_figures

    try:
        settings = open_target("local", credentials, state_dir, secrets_optional=True).settings
        return live_figures(dep.url, getattr(settings, "token_value", None), getattr(settings, "client_verify", True))
    except (OSError, ValueError, DeployKitError):
        return None


@cli.command(name="list")
@click.option("--metadata", type=click.Path(dir_okay=False), default=None, help="State file [default: ./metadata.yaml].")
@_json_option
@_handle
def list_(metadata: str | None, as_json: bool) -> None:
    """List the deployments recorded in metadata.yaml."""
    from deploykit.metadata import DEFAULT_PATH, MetadataStore

    state = MetadataStore(metadata if metadata is not None else DEFAULT_PATH).read()
    deps, pending = state.all(), state.pending()

    def ops_of(name: str, target: str) -> list[Any]:
        return [op for op in pending if (op.name, op.target) == (name, target)]

    recorded = {(d.name, d.target) for d in deps}
    unrecorded = [op for op in pending if (op.name, op.target) not in recorded]

    def human() -> None:
        if not deps and not unrecorded:
            click.echo("no deployments recorded")
        for d in deps:
            ops = ops_of(d.name, d.target)
            flag = f"\tPENDING {', '.join(f'{op.action} ({op.owner_state()})' for op in ops)}" if ops else ""
            click.echo(f"{d.name}\t{d.target}\trevision {d.revision}\t{d.status}\t{d.url or ''}{flag}")
        for op in unrecorded:
            click.echo(f"{op.name}\t{op.target}\t-\tPENDING {op.action} ({op.owner_state()})")

    # "pending" keys appear only when something is pending, so a clean state prints as before
    rows = [{**d.summary(), **({"pending": [op.summary() for op in ops]} if (ops := ops_of(d.name, d.target)) else {})}
            for d in deps]
    listing: dict[str, Any] = {"deployments": rows}
    if pending:
        listing["pending"] = [op.summary() for op in pending]
    _emit(listing, as_json, human)


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
@click.argument("name", required=False)
@click.option("--force", is_flag=True,
              help="Also reconcile operations recorded on another host (only once you know their process stopped).")
@click.option("--timeout", type=float, default=600, show_default=True)
@_target_option
@_state_options
@_json_option
@_handle
def reconcile(name: str | None, force: bool, timeout: float, target: str | None, credentials: str | None,
              metadata: str | None, as_json: bool) -> None:
    """Settle what interrupted (killed) operations of NAME, or of every deployment, left on their targets."""
    from deploykit.lifecycle import reconcile as run

    report = run(name, target=target, credentials=credentials, metadata=metadata, force=force, timeout=timeout)

    def human() -> None:
        if not (report.reconciled or report.skipped or report.failed):
            click.echo("nothing to reconcile" + (f" for {name!r}" if name else ""))
        for note in report.reconciled:
            click.echo(f"{note.name} on {note.target}: {note.describe()}")
        for op, why in report.skipped:
            click.echo(f"{op.name} on {op.target}: left alone: {why}")
        for op, why in report.failed:
            click.echo(f"deploykit: error: {op.name} on {op.target}: {why}", err=True)

    _emit(report.to_dict(), as_json, human)
    if not report.ok:
        sys.exit(1)


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
