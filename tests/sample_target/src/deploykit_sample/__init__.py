"""deploykit-sample: a third-party deploykit target, written as a plugin author would write one.

Its "platform" is a folder below the project's state dir: each deployment is an entry of
``sample/deployments.json`` pointing at a kept copy of its model file, and scoring loads that
copy and predicts in process. The only credential, ``sample.api_key``, must be ``sample-key``.
"""

from __future__ import annotations

from typing import Any

from deploykit.hookspecs import hookimpl

__all__ = ["deploykit_register_targets"]


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    """Register the ``sample`` target (imported only when used)."""
    registry.add("sample", "deploykit_sample.target:SampleTarget", description="deployments in a folder (a sample plugin)",
                 settings="deploykit_sample.target:SampleSettings")
