"""Serving environments of scoring-script bundles: one virtual environment per requirements file, cached.

A bundle with a ``requirements.txt`` is served by the python of a virtual environment built
from it, so a script pinned to another pandas does not change what deploykit itself runs on:

- it is made by the deploying interpreter (``python -m venv --without-pip``, fast) and sees
  deploykit's own server dependencies through a ``.pth`` file that adds every site folder of
  that interpreter (an editable deploykit install included) *after* the environment's own
  site-packages, so what the requirements install wins;
- the requirements are installed by the deploying interpreter's pip into it
  (``pip --python <env python> install -r requirements.txt``); what the added site folders
  already satisfy is not installed again;
- it is cached under ``<root>/<key>``, ``key`` the sha256 of the requirements text, the
  interpreter's version and its executable; ``root`` is ``local.env_cache``, else
  ``$XDG_CACHE_HOME/deploykit/envs`` (``~/.cache/deploykit/envs``);
- it is built in a temporary folder beside its final place and renamed into place under a
  file lock: a build that is killed leaves no half environment (the next build removes its
  leftovers), and two deploys of the same requirements build it once.

A requirement pip cannot install is a DeploymentError carrying pip's last lines; nothing is
started, so what served keeps serving.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from deploykit.errors import DeploymentError

__all__ = ["PTH_NAME", "cache_root", "environment_key", "serving_python"]

#: The file in the environment's site-packages that adds the deploying interpreter's site folders.
PTH_NAME = "zz-deploykit-base.pth"
_PIP_LINES = 12
_ABOUT = ("import json, site, sys; "
          "dirs = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if d in sys.path]; "
          "print(json.dumps({'version': sys.version, 'executable': sys.executable, 'site': dirs}))")


def cache_root(setting: str | None = None) -> Path:
    """Where environments are cached: ``setting`` (``local.env_cache``), else ``$XDG_CACHE_HOME/deploykit/envs``."""
    if setting:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deploykit" / "envs"


def environment_key(requirements: str, version: str, executable: str) -> str:
    """The cache key of an environment: sha256 of the requirements text, the interpreter's version and executable."""
    digest = hashlib.sha256()
    for part in (requirements, version, executable):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _about_interpreter(python: str) -> tuple[str, str, list[str]]:
    """The version, executable and site folders (those on its sys.path) of the interpreter ``python``."""
    if python == sys.executable:
        import site

        dirs = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if d in sys.path]
        return sys.version, sys.executable, dirs
    try:
        done = subprocess.run([python, "-c", _ABOUT], capture_output=True, text=True, timeout=60, check=True)
        about = json.loads(done.stdout)
        return str(about["version"]), str(about["executable"]), [str(d) for d in about["site"]]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as exc:
        raise DeploymentError(f"the interpreter {python!r} cannot be asked for its version and site folders "
                              f"({type(exc).__name__}); set local.python to a working Python or leave it unset") \
            from None


def _env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def serving_python(requirements: Path, *, root: Path, base: str = sys.executable, timeout: float = 600.0,
                   progress: Callable[[str], None] = lambda message: None) -> str:
    """The python of the cached environment built from ``requirements`` with the interpreter
    ``base`` (built now when missing); DeploymentError with pip's last lines when it cannot be built."""
    from filelock import FileLock, Timeout

    text = requirements.read_text(encoding="utf-8")
    version, executable, site_dirs = _about_interpreter(base)
    key = environment_key(text, version, executable)
    final = root / key
    python = _env_python(final)
    if python.exists():
        return str(python)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeploymentError(f"the environment cache {str(root)!r} cannot be created ({exc.strerror}); set "
                              "local.env_cache in credentials.yaml to a writable folder") from None
    try:
        with FileLock(str(root / f"{key}.lock"), timeout=timeout):
            if not python.exists():  # another deploy may have built it while this one waited
                _build(final, requirements, base, site_dirs, timeout, progress)
    except Timeout:
        raise DeploymentError(f"another deploy has been building the environment {str(final)!r} for more than "
                              f"{timeout:g} s; wait for it, or raise --timeout") from None
    return str(python)


def _build(final: Path, requirements: Path, base: str, site_dirs: list[str], timeout: float,
           progress: Callable[[str], None]) -> None:
    for leftover in final.parent.glob(f".{final.name}.*.tmp"):  # a build that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = final.parent / f".{final.name}.{os.getpid()}.tmp"
    progress(f"building the serving environment of {requirements.name} (cached in {final})")
    try:
        _run([base, "-m", "venv", "--without-pip", str(tmp)], "creating the virtual environment", timeout)
        python = _env_python(tmp)
        site_packages = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             "asking the new environment for its site-packages", timeout).strip()
        lines = "".join(f"site.addsitedir({d!r}); " for d in site_dirs)
        # One line starting with "import" is run by site at start-up: the base's folders come after
        # the environment's own site-packages, so what requirements.txt installs is imported first.
        (Path(site_packages) / PTH_NAME).write_text(f"import site; {lines}\n", encoding="utf-8")
        _run([base, "-m", "pip", "--python", str(python), "install", "--no-input", "--disable-pip-version-check",
              "-r", str(requirements)], f"installing {requirements.name}", timeout, pip=True)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _run(cmd: list[str], what: str, timeout: float, pip: bool = False) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DeploymentError(f"{what} took longer than {timeout:g} s; nothing was started, so what served keeps "
                              "serving; raise --timeout or check the package index is reachable") from None
    except OSError as exc:
        raise DeploymentError(f"{what} could not start {cmd[0]!r} ({exc.strerror}); nothing was started") from None
    if done.returncode != 0:
        said = "\n".join((done.stdout + done.stderr).strip().splitlines()[-_PIP_LINES:])
        fix = ("fix or remove the requirement pip names (check its name and version on the package index); "
               if pip else "")
        raise DeploymentError(f"{what} failed (exit {done.returncode}); {fix}nothing was started, so what served "
                              f"keeps serving. {'pip' if pip else cmd[0]} said:\n{said}")
    return done.stdout
