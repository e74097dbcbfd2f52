"""The deployable Python function Watson runs for a scoring-script bundle (its source is what is stored).

Watson saves only the code inside the outer function and calls it once when the deployment
starts; its arguments must all have primitive default values (deploykit writes the bundle's
package name and entrypoints into them), and it returns ``score(payload)``, called per request.
The bundle itself is installed on the deployment's software specification as a package
extension (the package ``package``: the script, model file, extra files, ``.env`` and
``deploykit.yaml`` flat in one folder). Nothing here imports deploykit: Watson's runtime has
only the base specification's packages and the bundle.

``score`` of a **sync** bundle turns Watson's ``{"input_data": [{"fields", "values"}]}`` into
one JSON object per row, calls the script's ``score(data, base_path)`` (after ``process`` when
there is one), and answers ``{"predictions": [{"fields", "values"}]}``: one block per input
block, the fields the keys of the script's answers (a row's answer that is not an object is
``{"prediction": answer}``), numpy values made plain.

``score`` of an **async** bundle (run by a Watson batch job) writes each input block as
``input.csv`` into a fresh folder (``inputFileName``), runs ``build_df`` (if any) and the
script's ``score(data_path, model_path)``, and answers the output file it returned (inside that
folder, else refused) as one block of its columns and rows. An exception of the script
propagates either way, so Watson answers its error.
"""

# The stored source must run on Watson's Python as it is: no annotations (they would need imports
# outside the outer function, which Watson does not save), so mypy may not ask for them here.
# mypy: disable-error-code="no-untyped-def,no-untyped-call"

from __future__ import annotations

__all__ = ["deploykit_bundle_function"]


def deploykit_bundle_function(package="deploykit_bundle", entrypoint="app.py:score", preprocess="",
                              env_file=".env", model_file="", mode="sync"):
    """The outer function: load the bundle once, return ``score(payload)``."""
    import importlib.util
    import json
    import math
    import os
    import sys

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise ImportError(f"the bundle package {package!r} is not installed on this deployment's software "
                          "specification; deploy the bundle again with deploykit")
    base_path = os.path.dirname(spec.origin) + os.sep
    env_path = os.path.join(base_path, env_file) if env_file else ""
    if env_path and os.path.isfile(env_path):
        with open(env_path, encoding="utf-8") as fh:
            for line in fh.read().splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("export "):
                    line = line[7:].lstrip()
                key, _, value = line.partition("=")
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                os.environ[key.strip()] = value
    if model_file:
        os.environ["modelFileName"] = model_file
    if base_path not in sys.path:
        sys.path.insert(0, base_path)  # extra modules beside the script import by name

    def load(entry):
        file, _, func = entry.partition(":")
        where = importlib.util.spec_from_file_location(os.path.splitext(file)[0], os.path.join(base_path, file))
        module = importlib.util.module_from_spec(where)  # type: ignore[arg-type]
        sys.modules.setdefault(where.name, module)  # type: ignore[union-attr]
        where.loader.exec_module(module)  # type: ignore[union-attr]
        return getattr(module, func)

    user_score = load(entrypoint)
    user_process = load(preprocess) if preprocess else None

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if hasattr(value, "tolist"):  # numpy arrays and scalars, pandas objects
            return plain(value.tolist())
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            return plain(value.item())
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    def answer(row):
        data = json.dumps(row)
        if user_process is not None:
            pre = user_process(data, base_path)
            data = pre if isinstance(pre, str) else json.dumps(plain(pre))
        result = user_score(data, base_path)
        if isinstance(result, bytes):
            result = result.decode("utf-8")
        if isinstance(result, str):
            result = json.loads(result)
        result = plain(result)
        return result if isinstance(result, dict) else {"prediction": result}

    def read_table(path):
        import pandas as pd

        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".json", ".jsonl", ".ndjson"):
            return pd.read_json(path, lines=suffix != ".json")
        return pd.read_csv(path)

    def execution(block):
        import shutil
        import tempfile

        import pandas as pd

        folder = tempfile.mkdtemp(prefix="deploykit-execution-")
        try:
            data_path = folder + os.sep
            frame = pd.DataFrame(block.get("values") or [], columns=block.get("fields") or None)
            frame.to_csv(os.path.join(folder, "input.csv"), index=False)
            os.environ["inputFileName"] = "input.csv"
            if user_process is not None:
                frame = user_process(read_table(os.path.join(folder, "input.csv")), data_path)
                frame.to_parquet(os.path.join(folder, "preprocessed_data.parquet"), index=False)
                os.environ["inputFileName"] = "preprocessed_data.parquet"
            output = user_score(data_path, base_path)
            real = os.path.realpath(str(output)) if output is not None else ""
            if not real.startswith(os.path.realpath(folder) + os.sep) or not os.path.isfile(real):
                raise ValueError(f"the async script returned {output!r}, which is not a file it wrote in its "
                                 f"execution folder {data_path}; write the output there and return its full path")
            table = read_table(real)
            return {"fields": [str(c) for c in table.columns], "values": plain(table.astype(object).values.tolist())}
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def score(payload):
        if mode == "async":
            return {"predictions": [execution(block) for block in payload.get("input_data") or []]}
        blocks = []
        for block in payload.get("input_data") or []:
            fields = list(block.get("fields") or [])
            answers = []
            for values in block.get("values") or []:
                row = dict(zip(fields, values)) if fields else {str(i): v for i, v in enumerate(values)}
                answers.append(answer(row))
            keys = []
            for one in answers:
                keys += [k for k in one if k not in keys]
            blocks.append({"fields": keys, "values": [[one.get(k) for k in keys] for one in answers]})
        return {"predictions": blocks}

    return score
