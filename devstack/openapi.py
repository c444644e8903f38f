"""The refresh API's OpenAPI document, generated from the resolver's routes and models.

    python -m devstack.openapi [openapi.json]           rewrite the committed document
    python -m devstack.openapi --check [openapi.json]   exit 1 if it is stale

Run from the repository root with layers/matchstats and functions on PYTHONPATH. Not
imported by the Lambda handler.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Server, ServerVariable

from matchstats.api import SECURITY_SCHEME
from refresh_api.app import app

TITLE = "matchstats refresh API"
API_VERSION = "1.0.0"
DEFAULT_PATH = Path("openapi.json")
_SCHEMA_REF_PREFIX = "#/components/schemas/"


def openapi_document() -> str:
    """The document as committed: JSON, two-space indent, trailing newline."""
    generated = app.get_openapi_json_schema(
        title=TITLE,
        version=API_VERSION,
        description=(
            "Asks matchstats to refresh its materialized views (standings and competitor"
            " stats). The full URL of the operation is the stack output RefreshApiUrl."
        ),
        servers=[
            Server(
                url="https://{restApiId}.execute-api.{region}.amazonaws.com/prod",
                description="The RefreshApi stage of a deployed stack",
                variables={
                    "restApiId": ServerVariable(default="abcdef1234", description="RefreshApi id"),
                    "region": ServerVariable(default="us-east-1"),
                },
            )
        ],
        security_schemes={
            SECURITY_SCHEME: HTTPBearer(
                description=(
                    "The cron secret, from the Secrets Manager secret of the stack output"
                    " CronSecretArn."
                )
            )
        },
    )
    document = _answers_as_served(json.loads(generated))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _answers_as_served(document: dict[str, Any]) -> dict[str, Any]:
    """Drops the 422 the resolver documents for every validated route: the API answers a
    failed validation with 400 (SPEC section 7), documented on the route itself. Schemas
    that only the 422 used go with it."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    used = _reachable_schemas(document.get("paths", {}), schemas)
    for name in [name for name in schemas if name not in used]:
        del schemas[name]
    return document


def _reachable_schemas(root: Any, schemas: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    pending = list(_schema_refs(root))
    while pending:
        name = pending.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending.extend(_schema_refs(schemas[name]))
    return seen


def _schema_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF_PREFIX):
            yield ref.removeprefix(_SCHEMA_REF_PREFIX)
        for value in node.values():
            yield from _schema_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_refs(item)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.openapi", description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)

    document = openapi_document()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else None
        if current != document:
            print(f"{args.path} is stale: run python -m devstack.openapi", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(document, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
