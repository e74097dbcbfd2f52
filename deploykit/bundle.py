"""A scoring script with its files (a *bundle*), deployable like a model file.

The contract is Neomaril's (MLOps Codex), kept exactly so existing scripts run unchanged:

- **sync** ``score(data: str, base_path: str) -> dict | str``: ``data`` is the request's JSON
  as a string, ``base_path`` the folder holding the model file, the script and the extra files;
  numpy values in the returned dict are converted, not an error.
- **async** ``score(data_path: str, model_path: str) -> str``: ``data_path`` is a folder made
  for that execution holding the uploaded input file (its name in ``inputFileName``); the
  script writes its output file there and returns its full path. ``model_path`` is the
  bundle's folder, as ``base_path`` is for sync.
- Environment variables: ``modelFileName``, ``inputFileName`` (async), and every variable of
  the user's env file. ``base_path`` and ``model_path`` end with ``/``, so both
  ``base_path + "/model.pkl"`` (a doubled slash is harmless) and
  ``base_path + os.getenv("modelFileName")`` name the model file.
- Optional preprocessing: ``process(data: str, base_path: str) -> dict | str`` (sync) and
  ``build_df(df, data_path) -> DataFrame`` (async), run before ``score``.

A :class:`Script` names the files; :func:`stage_bundle` stages them flat into one folder with
a normalized ``deploykit.yaml`` manifest, and ``load_artifact`` makes that an :class:`~deploykit.artifact.Artifact`
(``flavor == "script"``) whose sha256 covers every file, so an unchanged bundle is a no-op and
any changed file is a new revision. Nothing of the user's code runs in the deploying process:
the entrypoints are checked by parsing the source (``ast``), and :class:`ScriptModel` imports
them only where it is built, in a target's own server process. The env file is staged with
mode 0600 and its values are never read here; only its file name is in the manifest.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import ArtifactError

__all__ = ["MANIFEST", "MODES", "Script", "ScriptFailure", "ScriptModel", "StagedBundle", "is_bundle", "read_env_file",
           "run_async", "schema_of", "stage_bundle"]

#: The manifest file of a bundle folder (also what a user's folder holds to be deployable).
MANIFEST = "deploykit.yaml"
MODES = ("sync", "async")
_KEYS = ("entrypoint", "model_file", "extra", "requirements", "env", "schema", "mode", "preprocess", "name")
_ENTRY = re.compile(r"^(?P<file>[^:]+\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*)$")
_PREPROCESS_NAME = {"sync": "process", "async": "build_df"}
_ARITY = {("score", "sync"): ("data", "base_path"), ("score", "async"): ("data_path", "model_path"),
          ("pre", "sync"): ("data", "base_path"), ("pre", "async"): ("df", "data_path")}


@dataclass
class Script:
    """A scoring script and the files it needs, for ``deploykit.deploy(Script(...))``.

    ``entrypoint`` is ``"app.py:score"`` (a file and the function in it); ``model_file`` the
    model it loads (its name reaches the script as ``modelFileName``); ``extra`` more files put
    in the same folder (a second pickle, a helper module); ``requirements`` a pip requirements
    file the serving environment is built from; ``env`` an env file (``KEY=value`` lines) whose
    variables the script reads; ``schema`` a deploykit schema.json or an example request (one
    JSON object), used for the OpenAPI example and the smoke test; ``mode`` ``"sync"`` or
    ``"async"``; ``preprocess`` ``"prep.py:process"`` run before ``score``. Relative paths are
    read from the current directory, or from the folder for :meth:`from_folder`.
    """

    entrypoint: str
    model_file: str | Path | None = None
    extra: list[str | Path] = field(default_factory=list)
    requirements: str | Path | None = None
    env: str | Path | None = None
    schema: str | Path | None = None
    mode: str = "sync"
    preprocess: str | None = None
    name: str | None = None
    root: Path = field(default_factory=Path)

    @classmethod
    def from_folder(cls, folder: str | Path) -> Script:
        """Read ``folder/deploykit.yaml`` (keys: ``entrypoint``, ``model_file``, ``extra``,
        ``requirements``, ``env``, ``schema``, ``mode``, ``preprocess``, ``name``); paths in it
        are relative to the folder."""
        import yaml

        folder = Path(folder)
        path = folder / MANIFEST
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactError(f"{str(folder)!r} has no {MANIFEST}; write one naming at least "
                                "'entrypoint: app.py:score', or pass app.py:score --model-file ...") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ArtifactError(f"{str(path)!r} cannot be read as YAML ({exc}); fix it") from None
        if not isinstance(data, dict):
            raise ArtifactError(f"{str(path)!r} must be a mapping of {', '.join(_KEYS)}, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(_KEYS))
        if unknown:
            raise ArtifactError(f"{str(path)!r} has unknown key(s) {unknown}; the keys are {', '.join(_KEYS)}")
        if "entrypoint" not in data:
            raise ArtifactError(f"{str(path)!r} names no entrypoint; add 'entrypoint: app.py:score'")
        extra = data.get("extra") or []
        if isinstance(extra, str):
            extra = [extra]
        if not isinstance(extra, list) or not all(isinstance(e, str) for e in extra):
            raise ArtifactError(f"{str(path)!r}: 'extra' is {extra!r}; write a list of file names")
        for key in ("entrypoint", "model_file", "requirements", "env", "schema", "mode", "preprocess", "name"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ArtifactError(f"{str(path)!r}: {key!r} is {value!r} ({type(value).__name__}); write a string")
        return cls(data["entrypoint"], data.get("model_file"), list(extra), data.get("requirements"),
                   data.get("env"), data.get("schema"), data.get("mode") or "sync", data.get("preprocess"),
                   data.get("name"), folder)

    def _path(self, value: str | Path) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path


def is_bundle(source: str | Path) -> bool:
    """True for ``file.py:function`` or a folder holding a ``deploykit.yaml``."""
    text = str(source)
    if _ENTRY.match(text):
        return True
    path = Path(text).expanduser()
    return path.is_dir() and (path / MANIFEST).is_file()


def _function_args(source: Path, func: str, label: str) -> list[str]:
    """The parameter names of ``func`` in ``source``, read by parsing it (nothing runs)."""
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except SyntaxError as exc:
        raise ArtifactError(f"the {label} script {str(source)!r} does not parse: line {exc.lineno}: {exc.msg}; "
                            "fix the syntax error") from None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == func:
            return [a.arg for a in node.args.posonlyargs + node.args.args]
    defined = sorted(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    raise ArtifactError(f"the {label} script {str(source)!r} defines no top-level function {func!r} "
                        f"(it defines {defined or 'none'}); name the function after ':'")


def _entry(script: Script, value: str, role: str) -> tuple[Path, str]:
    match = _ENTRY.match(value)
    label = "scoring" if role == "score" else "preprocessing"
    if match is None:
        raise ArtifactError(f"the {label} entrypoint {value!r} is not FILE.py:FUNCTION; write it as "
                            f"{'app.py:score' if role == 'score' else 'prep.py:' + _PREPROCESS_NAME[script.mode]}")
    path = script._path(match["file"])
    if not path.is_file():
        raise ArtifactError(f"the {label} script {str(path)!r} (from {value!r}) does not exist; pass an existing .py file")
    args = _function_args(path, match["func"], label)
    expected = _ARITY[(role, script.mode)]
    if len(args) < len(expected):
        raise ArtifactError(
            f"{match['func']}() in {str(path)!r} takes {len(args)} argument(s) {args}, but a {script.mode} "
            f"{label} function is called as {match['func']}({', '.join(expected)}); change its signature"
            + (" (or deploy it with --mode async)" if script.mode == "sync" and role == "score"
               and args[:1] == ["data_path"] else ""))
    return path, match["func"]


def _file(script: Script, value: str | Path, what: str) -> Path:
    path = script._path(value)
    if not path.is_file():
        raise ArtifactError(f"the {what} {str(path)!r} does not exist (or is not a file); pass an existing file")
    return path


def _stage(script: Script, dest: Path) -> dict[str, Any]:
    """Copy the bundle's files flat into ``dest`` and return its normalized manifest."""
    if script.mode not in MODES:
        raise ArtifactError(f"mode {script.mode!r} is not a scoring mode; use 'sync' or 'async'")
    entry_path, entry_func = _entry(script, script.entrypoint, "score")
    files: dict[str, Path] = {entry_path.name: entry_path}
    manifest: dict[str, Any] = {"entrypoint": f"{entry_path.name}:{entry_func}", "mode": script.mode}

    def add(path: Path, what: str) -> str:
        other = files.get(path.name)
        if other is not None and other.resolve() != path.resolve():
            raise ArtifactError(f"the {what} {str(path)!r} and {str(other)!r} share the file name {path.name!r}; "
                                "a bundle holds its files in one folder, so rename one of them")
        if path.name == MANIFEST and what != "manifest":
            raise ArtifactError(f"the {what} {str(path)!r} is named {MANIFEST}, which a bundle keeps for its "
                                "manifest; rename it")
        files[path.name] = path
        return path.name

    if script.preprocess:
        pre_path, pre_func = _entry(script, script.preprocess, "pre")
        manifest["preprocess"] = f"{add(pre_path, 'preprocessing script')}:{pre_func}"
    if script.model_file is not None:
        manifest["model_file"] = add(_file(script, script.model_file, "model file"), "model file")
    extras = [add(_file(script, e, "extra file"), "extra file") for e in script.extra]
    if extras:
        manifest["extra"] = sorted(extras)
    if script.requirements is not None:
        manifest["requirements"] = add(_file(script, script.requirements, "requirements file"), "requirements file")
    if script.schema is not None:
        manifest["schema"] = add(_file(script, script.schema, "schema file"), "schema file")
    env_path = _file(script, script.env, "env file") if script.env is not None else None
    if env_path is not None:
        read_env_file(env_path)  # a malformed line fails the deploy here, naming the line, never the value
        manifest["env"] = ".env"
        if ".env" in files:
            raise ArtifactError(f"{str(files['.env'])!r} is named .env, which the bundle keeps for the env file; "
                                "rename it")
    for name, path in files.items():
        shutil.copyfile(path, dest / name)
    if env_path is not None:
        fd = os.open(dest / ".env", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh, env_path.open("rb") as src:
            shutil.copyfileobj(src, fh)
    import yaml

    (dest / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=True), encoding="utf-8")
    return manifest


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an env file: ``KEY=value`` lines, ``#`` comments, optional ``export``
    and quotes. A bad line is an ArtifactError naming its line number, never its content."""
    variables: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"the env file {str(path)!r} cannot be read ({type(exc).__name__}); "
                            "pass a UTF-8 text file of KEY=value lines") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ArtifactError(f"the env file {str(path)!r} has a line that is not KEY=value (line {number}); "
                                "fix that line (values are not shown, they may be secrets)")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[key] = value
    return variables


def schema_of(folder: Path, manifest: dict[str, Any]) -> tuple[Any, str]:
    """The bundle's schema: a deploykit schema.json, or an example request (one object, or a
    list of them) turned into one; an empty schema (no example, smoke test skipped) without one."""
    import json

    from deploykit.schema import Schema

    name = manifest.get("schema")
    if name is None:
        return Schema([]), "none (no schema or example request in the bundle)"
    path = folder / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"the schema file {name!r} of the bundle is not valid JSON ({exc}); "
                            "pass a schema.json or one example request as a JSON object") from None
    if isinstance(data, dict) and isinstance(data.get("columns"), list):
        return Schema.from_dict(data, source=name), name
    if isinstance(data, dict) and set(data) == {"Input"} and isinstance(data["Input"], dict):
        data = data["Input"]  # a Neomaril request body
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        data = data[0]
    if not isinstance(data, dict) or not data:
        raise ArtifactError(f"the schema file {name!r} holds {type(data).__name__} {str(data)[:60]!r}; pass a "
                            "deploykit schema.json or one example request as a JSON object of column -> value")
    import pandas as pd

    schema = Schema.from_frame(pd.DataFrame([data]))
    schema.example = dict(data)
    schema.allow_extra_columns = True
    return schema, name


@dataclass
class StagedBundle:
    """A bundle's staged folder (every file flat, a normalized manifest), its manifest, its
    deployment name (``name``, else the script's file name), and whether the folder was made
    here (``owned``: remove it when done) or given already staged."""

    folder: Path
    manifest: dict[str, Any]
    name: str | None
    owned: bool


def stage_bundle(source: Script | str | Path) -> StagedBundle:
    """Stage a bundle for ``load_artifact`` (which makes it an Artifact with ``flavor == "script"``).

    ``source`` is a :class:`Script`, ``"app.py:score"`` (a script alone), or a folder holding a
    ``deploykit.yaml`` (a user's folder, staged afresh, or a staged bundle a server loads, used
    as it is). ArtifactError naming the file, key or function that is wrong, and the fix."""
    import yaml

    if isinstance(source, Script):
        script = source
    elif _ENTRY.match(str(source)):
        script = Script(str(source))
    else:
        folder = Path(source).expanduser()
        script = Script.from_folder(folder)
        if _is_staged(folder):
            manifest = yaml.safe_load((folder / MANIFEST).read_text(encoding="utf-8"))
            return StagedBundle(folder.resolve(), manifest, script.name, owned=False)
    staged = Path(tempfile.mkdtemp(prefix="deploykit-bundle-"))
    try:
        manifest = _stage(script, staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    entry = _ENTRY.match(script.entrypoint)
    return StagedBundle(staged, manifest, script.name or (Path(entry["file"]).stem if entry else None), owned=True)


def _is_staged(folder: Path) -> bool:
    """A staged bundle: its manifest is in normal form and the folder holds exactly the files it
    names, flat. (A user's folder holding anything more, a subfolder, a ``.git``, a ``__pycache__``,
    or a hand-written manifest, is staged afresh, so only the bundle's own files are deployed.)"""
    import yaml

    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
        manifest = yaml.safe_load(text)
    except (OSError, yaml.YAMLError):
        return False
    if not isinstance(manifest, dict) or "mode" not in manifest or "name" in manifest or \
            not isinstance(manifest.get("extra") or [], list) or text != yaml.safe_dump(manifest, sort_keys=True):
        return False
    names = [str(v).split(":")[0] for k, v in manifest.items() if k in ("entrypoint", "preprocess", "model_file",
                                                                         "requirements", "schema")]
    names += list(manifest.get("extra") or [])
    if manifest.get("env") not in (None, ".env") or not all("/" not in n and (folder / n).is_file() for n in names):
        return False
    expected = {*names, MANIFEST, *([".env"] if manifest.get("env") else [])}
    if manifest.get("env") and (folder / ".env").stat().st_mode & 0o077:
        return False  # a user's env file readable by others: staged afresh, so the copy deployed is 0600
    return {p.name for p in folder.iterdir()} == expected


class ScriptFailure(Exception):
    """The user's script raised: ``message`` is ``Type: text``, ``bad_input`` True for the
    exceptions a script raises on input it cannot use (ValueError, KeyError, TypeError,
    IndexError), ``traceback`` the formatted traceback for the server's log."""

    def __init__(self, message: str, bad_input: bool, traceback: str) -> None:
        super().__init__(message)
        self.message = message
        self.bad_input = bad_input
        self.traceback = traceback


def _failure(exc: BaseException) -> ScriptFailure:
    import traceback

    text = f"{type(exc).__name__}: {exc}"
    return ScriptFailure(text, isinstance(exc, (ValueError, KeyError, TypeError, IndexError)),
                         "".join(traceback.format_exception(exc)))


class ScriptModel:
    """The user's script inside a serving process: ``load()`` sets the environment variables
    and imports the entrypoints; ``score_sync`` and ``score_async`` call them by the contract.

    Build it only in a process made to run user code (a target's server, never the CLI)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self.mode: str = manifest.get("mode", "sync")
        self.base_path = str(folder) + os.sep
        self._score: Any = None
        self._pre: Any = None

    def environment(self) -> dict[str, str]:
        """The variables the script sees: ``modelFileName`` and the env file's (read here, in the server)."""
        variables = {}
        if self.manifest.get("model_file"):
            variables["modelFileName"] = self.manifest["model_file"]
        if self.manifest.get("env"):
            variables.update(read_env_file(self.folder / self.manifest["env"]))
        return variables

    def load(self) -> ScriptModel:
        """Set the environment and import the script (once); ArtifactError naming the script when importing fails."""
        if self._score is not None:
            return self
        os.environ.update(self.environment())
        if str(self.folder) not in sys.path:
            sys.path.insert(0, str(self.folder))  # extra modules beside the script import by name
        self._score = self._import(self.manifest["entrypoint"])
        if self.manifest.get("preprocess"):
            self._pre = self._import(self.manifest["preprocess"])
        return self

    def _import(self, entry: str) -> Any:
        import importlib.util

        file, func = entry.split(":")
        spec = importlib.util.spec_from_file_location(Path(file).stem, self.folder / file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(spec.name, module)
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            raise ArtifactError(f"importing the script {file!r} failed: {_failure(exc).message}; fix the script "
                                "(the server log has the traceback)") from exc
        return getattr(module, func)

    def score_sync(self, data: str) -> Any:
        """Call ``process`` (if any) and ``score`` with the request's JSON text; the JSON-safe
        answer (a returned JSON string is parsed; numpy values converted). ScriptFailure when the script raises."""
        import json

        from deploykit.payload import jsonable

        self.load()
        try:
            if self._pre is not None:
                pre = self._pre(data, self.base_path)
                data = pre if isinstance(pre, str) else json.dumps(jsonable(pre))
            result = self._score(data, self.base_path)
        except Exception as exc:
            raise _failure(exc) from exc
        if isinstance(result, (str, bytes)):
            try:
                return json.loads(result)
            except ValueError:
                raise ScriptFailure(f"the script returned text that is not JSON: {str(result)[:80]!r}", False,
                                    "") from None
        odd = _not_jsonable(result, "the answer")
        if odd is not None:
            raise ScriptFailure(f"the script returned {odd}, which is not JSON-able; return a dict of strings, "
                                "numbers, lists and dicts (numpy values are fine), or a JSON string", False, "")
        return jsonable(result)

    def score_async(self, data_path: str | Path, input_name: str) -> Path:
        """Run an async execution in ``data_path`` (holding ``input_name``): ``build_df`` (if
        any) on the input read as a table, then ``score(data_path, model_path)``; the output
        file's path. Sets ``inputFileName`` in this process: run one execution per process."""
        self.load()
        folder = str(Path(data_path)) + os.sep
        os.environ["inputFileName"] = input_name
        try:
            if self._pre is not None:
                frame = _read_table(Path(data_path) / input_name)
                frame = self._pre(frame, folder)
                frame.to_parquet(Path(data_path) / "preprocessed_data.parquet", index=False)
                os.environ["inputFileName"] = "preprocessed_data.parquet"
            result = self._score(folder, self.base_path)
        except Exception as exc:
            raise _failure(exc) from exc
        output = Path(str(result)) if result is not None else None
        if output is None or not output.is_file():
            raise ScriptFailure(f"the async script returned {result!r}, which is not the path of a file it wrote; "
                                "return the output file's full path", False, "")
        return output


def _not_jsonable(value: Any, where: str) -> str | None:
    """``where`` and the type of the first value in ``value`` that ``jsonable`` would only stringify
    (an object, a DataFrame), or None when every value converts to JSON as what it is."""
    import datetime
    import decimal
    from collections.abc import Mapping

    if value is None or isinstance(value, (str, bytes, bool, int, float, decimal.Decimal, datetime.date,
                                           datetime.time)):
        return None
    if isinstance(value, Mapping):
        return next((odd for k, v in value.items() if (odd := _not_jsonable(v, f"{where}[{k!r}]"))), None)
    if isinstance(value, (list, tuple, set, frozenset)):
        return next((odd for i, v in enumerate(value) if (odd := _not_jsonable(v, f"{where}[{i}]"))), None)
    if hasattr(value, "tolist") or type(value).__name__ in ("NAType", "NaTType"):  # numpy values, a Series
        return None
    return f"{where} as a {type(value).__module__}.{type(value).__qualname__}"


def _read_table(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".json", ".jsonl", ".ndjson"):
        return pd.read_json(path, lines=suffix != ".json")
    return pd.read_csv(path)


def run_async(folder: str | Path, data_path: str | Path, input_name: str) -> Path:
    """One async execution of the staged bundle ``folder`` (see ``ScriptModel.score_async``).

    Also ``python -m deploykit.bundle FOLDER DATA_PATH INPUT_NAME``: prints the output path;
    exit 1 with the script's message on stderr (and its traceback) when the script fails."""
    import yaml

    folder = Path(folder)
    manifest = yaml.safe_load((folder / MANIFEST).read_text(encoding="utf-8"))
    return ScriptModel(folder, manifest).score_async(data_path, input_name)


def _main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m deploykit.bundle FOLDER DATA_PATH INPUT_NAME", file=sys.stderr)
        return 2
    try:
        print(run_async(*argv))
    except ScriptFailure as exc:
        print(exc.traceback, file=sys.stderr)
        print(exc.message, file=sys.stderr)
        return 1
    except ArtifactError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
