"""Deployment names: one rule that every target accepts, checked before anything is written.

The strictest platform rule is SageMaker's endpoint name (``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``,
63 characters at most). deploykit derives remote names from the deployment name
(``{name}-{revision}-{hash8}`` for SageMaker models and endpoint configs, ``{name}-batch`` on
Watson), so a name is at most 40 characters, leaving room for those suffixes. A name is
letters, digits and single hyphens, starting and ending with a letter or digit (SageMaker
refuses underscores). It is also used as a file and folder name under ``.deploykit/``, which
this rule keeps safe: no ``/``, ``..``, spaces or NUL.
"""

from __future__ import annotations

import re

from deploykit.errors import InvalidNameError

__all__ = ["MAX_NAME_LENGTH", "check_name", "name_from_file"]

#: Longest deployment name; derived remote names add up to 23 characters.
MAX_NAME_LENGTH = 40

_NAME = re.compile(r"^[A-Za-z0-9](?:-?[A-Za-z0-9])*$")
_FIX = ("use letters, digits and single hyphens, starting and ending with a letter or digit, "
        f"at most {MAX_NAME_LENGTH} characters (e.g. 'bank-model'); pass --name")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid deployment name, else raise InvalidNameError naming it and the rule."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"deployment name {name!r} is empty or not a string; {_FIX}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"deployment name {name[:60]!r}{'...' if len(name) > 60 else ''} has "
                               f"{len(name)} characters; {_FIX}")
    if not _NAME.match(name):
        raise InvalidNameError(f"deployment name {name!r} is not allowed; {_FIX}")
    return name


def name_from_file(stem: str) -> str:
    """A valid default name from a file name (``bank_model.v2`` -> ``bank-model-v2``), or the stem unchanged
    when nothing valid can be made of it (``check_name`` then explains)."""
    candidate = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9]", "-", stem)).strip("-")[:MAX_NAME_LENGTH].strip("-")
    return candidate or stem
