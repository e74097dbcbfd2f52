"""Payload codecs: every wire protocol deploykit knows, to and from one table, plus Predictions.

One module per protocol holds its request codec, its response codec and its error body:
``records`` (deploykit's own: one object, a list of objects, or columns), ``mlflow``
(``dataframe_split`` / ``dataframe_records`` / ``instances`` / ``inputs``), ``watson``
(``input_data``), ``v2`` (Open Inference Protocol: one tensor per column or one 2-D tensor,
JSON or binary; ``v2_matrix`` encodes the 2-D form) and ``csv`` (a header line). They register
in ``registry`` through the ``deploykit_register_formats`` hook, as a plugin's protocol does.

``decode_table`` turns a payload into a :class:`Table` (column name -> values, exactly as
sent: no value is cast); ``decode`` gives the same as a pandas DataFrame, with each column in
the narrowest dtype that holds its values unchanged (ints stay ints, an int column with nulls
becomes ``Int64``). The schema check (``Schema.check`` / ``Schema.validate``) decides what a
model accepts. ``encode`` is the reverse, and :class:`Predictions` is the one type every
protocol's response decodes into. numpy and pandas are imported on first use, never at import.
"""

from __future__ import annotations

from deploykit.payload.predictions import Predictions
from deploykit.payload.registry import (
    FORMATS,
    PROTOCOLS,
    Format,
    Protocol,
    decode,
    decode_table,
    detect_format,
    encode,
    load_builtins,
    protocol,
    register,
)
from deploykit.payload.table import Table, column_array, jsonable
from deploykit.payload.v2 import decode_v2_binary

__all__ = [
    "FORMATS",
    "PROTOCOLS",
    "Format",
    "Predictions",
    "Protocol",
    "Table",
    "column_array",
    "decode",
    "decode_table",
    "decode_v2_binary",
    "detect_format",
    "encode",
    "jsonable",
    "protocol",
    "register",
]

load_builtins()
