"""deploykit.files: atomic writes leave the old content or the new, and never a stray temp file."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from deploykit.files import FileWriteError, atomic_copy, atomic_write


def _in_child(fn: Callable[[], None]) -> tuple[int, str]:
    """Run ``fn`` in a forked child; (its errno or 0, its error message). A child so that dropping
    root or lowering a resource limit does not touch the test process."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        os.close(read)
        code, text = 0, ""
        try:
            fn()
        except FileWriteError as exc:
            code, text = exc.errno or 255, str(exc)
        except BaseException as exc:  # anything else is a defect the parent reports
            code, text = 254, f"{type(exc).__name__}: {exc}"
        os.write(write, text.encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


def test_replaces_content_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    atomic_write(target, b'{"port": 1}', mode=0o600)
    assert target.read_bytes() == b'{"port": 1}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == []


def test_read_only_folder_is_a_clear_error_and_leaves_no_temp_file(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    target = folder / "metadata.yaml"
    target.write_text("old: true\n")
    folder.chmod(0o555)
    tmp_path.chmod(0o755)

    def write() -> None:
        if os.geteuid() == 0:  # root writes anywhere: be an ordinary user, as the real one is
            os.setgid(65534)
            os.setuid(65534)
        atomic_write(target, b"new: true\n")

    try:
        code, message = _in_child(write)
    finally:
        folder.chmod(0o755)
    assert code == errno.EACCES, message
    assert str(target) in message and "write permission" in message
    assert target.read_text() == "old: true\n" and _leftovers(folder) == []


def test_full_disk_mid_write_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    target.write_bytes(b"old")

    def write() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        atomic_write(target, b"x" * 100_000)

    code, message = _in_child(write)
    assert code == errno.EFBIG, message
    assert "cannot write" in message and str(target) in message
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_failed_rename_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(FileWriteError) as info:
        atomic_write(target, b"data")
    assert isinstance(info.value, OSError) and str(target) in str(info.value)
    assert _leftovers(tmp_path) == []


def test_missing_folder_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileWriteError, match="create the folder first"):
        atomic_write(tmp_path / "nope" / "f.json", b"{}")


def test_copy_of_a_file_and_of_a_folder(tmp_path: Path) -> None:
    source = tmp_path / "model.joblib"
    source.write_bytes(b"model")
    folder = tmp_path / "mlmodel"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "MLmodel").write_text("flavors: {}")
    store = tmp_path / "store"
    store.mkdir()
    atomic_copy(source, store / "model.joblib")
    atomic_copy(folder, store / "model")
    assert (store / "model.joblib").read_bytes() == b"model"
    assert (store / "model" / "sub" / "MLmodel").read_text() == "flavors: {}"
    assert _leftovers(store) == []


def test_failed_copy_leaves_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(FileWriteError):
        atomic_copy(tmp_path / "absent.joblib", store / "model.joblib")
    assert list(store.iterdir()) == []


def test_decode_utf8_says_where_it_is_not() -> None:
    from deploykit.files import decode_utf8

    assert decode_utf8("café".encode()) == "café"
    with pytest.raises(ValueError, match=r"^byte 0xe9 at offset 11 \(line 2\)$"):
        decode_utf8("a: 1\nb: caf\xe9".encode("latin-1"))
