"""Parquet: a table as Apache Parquet bytes (``application/vnd.apache.parquet``), as MLflow 3's
scoring server accepts on ``/invocations``; read with pyarrow, column types kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deploykit.errors import PayloadError
from deploykit.hookspecs import hookimpl
from deploykit.payload.registry import Format, Protocol, table_format
from deploykit.payload.table import Table, _pd

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MEDIA_TYPE", "deploykit_register_formats"]

#: The Content-Type of a Parquet body.
MEDIA_TYPE = "application/vnd.apache.parquet"
_MAGIC = b"PAR1"


def _is_parquet(obj: Any) -> bool:
    return isinstance(obj, (bytes, bytearray)) and bytes(obj[:4]) == _MAGIC


def _table_parquet(obj: Any, columns: Sequence[str] | None, types: Any = None) -> Table:
    import io

    if not _is_parquet(obj):
        raise PayloadError("the body is not Parquet (a Parquet file starts with 'PAR1'); send the bytes "
                           "DataFrame.to_parquet() writes, or JSON")
    try:
        frame = _pd().read_parquet(io.BytesIO(bytes(obj)))
    except ImportError:
        raise PayloadError("reading Parquet needs pyarrow where the server runs; pip install 'deploykit[parquet]', "
                           "or send JSON or CSV") from None
    except Exception as exc:  # pyarrow raises several error types for a damaged file
        raise PayloadError(f"the Parquet body could not be read ({type(exc).__name__}: {exc}); send the bytes "
                           "DataFrame.to_parquet() writes") from None
    return Table.from_frame(frame)


def _encode_parquet(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@hookimpl
def deploykit_register_formats(register: Callable[[Format | Protocol], None]) -> None:
    """Register the Parquet request format."""
    register(table_format("parquet", _is_parquet, _table_parquet, _encode_parquet,
                          "Apache Parquet bytes (application/vnd.apache.parquet)", media_type=MEDIA_TYPE))
