"""Deployment names: one rule every target accepts, with a message that names the value and the rule."""

from __future__ import annotations

import pytest

from deploykit.errors import InvalidNameError
from deploykit.names import MAX_NAME_LENGTH, check_name, name_from_file


@pytest.mark.parametrize("name", ["bank-model", "A1", "m", "a" * MAX_NAME_LENGTH, "bank-model-2"])
def test_valid_names_pass_unchanged(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["../../x", "team/model", "a" * (MAX_NAME_LENGTH + 1), "a--b", "-a", "a-",
                                  "x_y", "with space", "", "nul\x00", "..", "é"])
def test_unsafe_or_too_long_names_are_refused_naming_the_value(name: str) -> None:
    with pytest.raises(InvalidNameError, match="letters, digits and single hyphens") as info:
        check_name(name)
    assert repr(name[:60]) in str(info.value)


def test_default_names_from_files_are_made_valid() -> None:
    assert name_from_file("bank_model.v2") == "bank-model-v2"
    assert check_name(name_from_file("my model (final)")) == "my-model-final"
