"""The process the Watson emulator runs one deployed Python function in (never the test or client process).

    python watson_function_worker.py CODE_FILE

As the service does, the function's code (the gz'd Python source the client uploaded) is
loaded once as a module, which runs the outer generator and leaves ``score`` at module level;
then every request is one JSON line on stdin (the scoring payload) answered by one JSON line
on the protocol stream: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "Type:
message", "traceback": "..."}``. The first line answers the load. The user's code may print:
its stdout goes to stderr (the emulator's log of this process), so the protocol stays clean.
Standard library only: the package extensions on PYTHONPATH are all the function gets.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import traceback
from typing import Any


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def main(argv: list[str]) -> int:
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the user's prints go to the log, not into the protocol
    sys.stdout = sys.stderr

    def send(doc: dict[str, Any]) -> None:
        protocol.write(json.dumps(doc) + "\n")
        protocol.flush()

    try:
        raw = open(argv[1], "rb").read()
        source = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
        module: dict[str, Any] = {"__name__": "deployed_function", "__file__": "deployed_function.py"}
        exec(compile(source, "deployed_function.py", "exec"), module)
        score = module.get("score")
        if not callable(score):
            raise RuntimeError("the function's code leaves no callable 'score' at module level; define score(payload) "
                               "or end with score = <generator>()")
    except BaseException as exc:  # the load failure is the deployment's failure message
        send(_failure(exc))
        return 1
    send({"ok": True})
    for line in sys.stdin:
        try:
            result = score(json.loads(line))
            text = json.dumps(result)
        except BaseException as exc:
            send(_failure(exc))
            continue
        protocol.write('{"ok": true, "result": ' + text + "}\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
