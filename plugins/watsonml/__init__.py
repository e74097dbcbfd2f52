"""The ``watsonml`` target plugin: IBM Watson Machine Learning through IBM's ibm-watsonx-ai client.

Registering the target imports nothing heavy: the SDK loads only when the target is used.
"""

from __future__ import annotations

from typing import Any

from deploykit.hookspecs import hookimpl


@hookimpl
def deploykit_register_targets(registry: Any) -> None:
    """Register the watsonml target (needs the ``watsonml`` extra: ibm-watsonx-ai)."""
    registry.add("watsonml", "deploykit_plugins.watsonml.target:WatsonTarget",
                 settings="deploykit_plugins.watsonml.target:WatsonSettings",
                 requires=("ibm_watsonx_ai",), extra="watsonml",
                 description="IBM Watson Machine Learning (IBM Cloud or Cloud Pak for Data) via ibm-watsonx-ai")
