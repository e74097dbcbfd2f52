"""Deploy or update a model, write its IDs to metadata.yaml, print one smoke prediction.

    python examples/model_deploy_pipeline.py MODEL CREDENTIALS [--metadata PATH] [--target T] [--name N] [--json]
    python examples/model_deploy_pipeline.py MODEL PROJECT_DIR CREDENTIALS      # older Watson pipelines

Re-running with the same model is a no-op. Exit 0 on success, 1 on a failure (the message
says what failed and how to fix it), 2 on bad usage: a CI step can act on it. Without
--target the target is ``watsonml`` for a flat legacy Watson credentials file (url plus
apikey, api_key or password at the top) and ``local`` otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import deploykit
from deploykit.artifact import load_artifact


def _default_target(credentials: Path) -> str:
    import yaml

    try:
        data = yaml.safe_load(credentials.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "local"  # deploykit reports the file's problem itself, with the fix
    legacy_watson = isinstance(data, dict) and "url" in data and bool(data.keys() & {"apikey", "api_key", "password"})
    return "watsonml" if legacy_watson else "local"


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, deploy, smoke-score; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="MODEL CREDENTIALS | MODEL PROJECT_DIR CREDENTIALS")
    parser.add_argument("--metadata", default=None, help="state file [default: ./metadata.yaml, or PROJECT_DIR/metadata.yaml]")
    parser.add_argument("--target", default=None, help="deploy target [default: from the credentials file, else local]")
    parser.add_argument("--name", default=None, help="deployment name [default: the model file name]")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if len(args.paths) == 2:
        model, credentials = args.paths
        metadata = args.metadata or "metadata.yaml"
    elif len(args.paths) == 3:
        model, project_dir, credentials = args.paths
        metadata = args.metadata or str(Path(project_dir) / "metadata.yaml")
    else:
        parser.error(f"expected MODEL CREDENTIALS or MODEL PROJECT_DIR CREDENTIALS, got {len(args.paths)} paths")
    target = args.target or _default_target(Path(credentials))
    try:
        artifact = load_artifact(model, credentials=credentials)
        dep = deploykit.deploy(artifact, target=target, name=args.name, credentials=credentials,
                               metadata=metadata, timeout=args.timeout)
        prediction = deploykit.score(dep.name, [artifact.example], target=target, credentials=credentials,
                                     metadata=metadata) if artifact.example else None
    except deploykit.DeployKitError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        else:
            print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    result = dep.summary()
    result["smoke_prediction"] = prediction.to_records()[0] if prediction else None
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(f"{dep.name} on {dep.target}: {dep.action}, revision {dep.revision}, {dep.url}")
        print(f"ids written to {metadata}: {json.dumps(dep.ids, default=str)}")
        if prediction:
            print(f"smoke prediction for the example row: {json.dumps(result['smoke_prediction'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
