"""The local server's routes take every protocol shape from deploykit.payload: no field name or V2
datatype is re-stated in plugins/local/ (issue 8's "done when")."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import deploykit_plugins.local

FIELD_NAMES = ("input_data", "dataframe_split", "dataframe_records", "instances", "inputs", "outputs",
               "predictions", "fields", "values", "datatype", "BOOL", "INT8", "INT16", "INT32", "INT64",
               "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64", "BYTES")
# A field name as a whole literal ("outputs"), or quoted inside one ('{"outputs": ...}'); prose such as
# "check the values" and the Watson route's path are not shapes.
_PATTERN = re.compile(r"""^(?:NAMES)$|["'](?:NAMES)["']""".replace("NAMES", "|".join(FIELD_NAMES)))


def _texts(path: Path) -> list[tuple[int, str]]:
    """Every string literal (docstrings aside) and comment of a module, with its line."""
    source = path.read_text()
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    out = [(node.lineno, node.value) for node in ast.walk(tree)
           if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]
    out += [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT]
    return out


def test_no_protocol_field_names_in_the_local_plugin() -> None:
    root = Path(deploykit_plugins.local.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) > 10, modules  # the split modules and routes/ are all read
    found = [f"{path.relative_to(root)}:{line}: {text!r}" for path in modules for line, text in _texts(path)
             if _PATTERN.search(text)]
    assert not found, "protocol shapes belong in deploykit/payload/<protocol>.py:\n" + "\n".join(found)


def test_the_check_sees_a_field_name() -> None:
    assert _PATTERN.search("outputs") and _PATTERN.search('{"inputs": []}') and _PATTERN.search("FP64")
    assert not _PATTERN.search("the model returned 3 predictions for 4 rows")
