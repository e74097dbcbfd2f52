"""A sample third-party target package (``deploykit_sample`` in ``src/``), made installable at test time.

``install_sample_target(site)`` writes the ``deploykit_sample-0.0.dist-info`` a pip install would
write (METADATA and an ``entry_points.txt`` declaring the ``deploykit`` entry point) into ``site``;
with ``site`` and ``src/`` on sys.path, deploykit finds the target like any installed plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent / "src"

__all__ = ["SRC", "SampleInstall", "install_sample_target"]


@dataclass
class SampleInstall:
    """Where the sample target was installed: the folders to put on sys.path / PYTHONPATH."""

    site: Path
    paths: tuple[Path, ...]


def install_sample_target(site: Path) -> SampleInstall:
    """Write the distribution metadata of ``deploykit-sample`` 0.0 into ``site``."""
    info = site / "deploykit_sample-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deploykit-sample\nVersion: 0.0\n"
                                   "Summary: a sample third-party deploykit target\n")
    (info / "entry_points.txt").write_text("[deploykit]\nsample = deploykit_sample\n")
    (info / "top_level.txt").write_text("deploykit_sample\n")
    return SampleInstall(site, (site, SRC))
