"""The API's contract as code: the committed openapi.json is the one the resolver
generates, it describes SPEC section 7, and the handler imports no database driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devstack.openapi import openapi_document
from matchstats.api import SECURITY_SCHEME
from matchstats.messages import RefreshScope

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_openapi_document_matches_the_code() -> None:
    # Given the committed openapi.json
    committed = (ROOT / "openapi.json").read_text(encoding="utf-8")

    # When the document is generated from the resolver
    generated = openapi_document()

    # Then they are the same (regenerate: python -m devstack.openapi)
    assert generated == committed, "openapi.json is stale: run python -m devstack.openapi"


def test_the_openapi_document_describes_the_contract() -> None:
    # Given the generated document
    document = json.loads(openapi_document())

    # When reading the one operation
    operation = document["paths"]["/cron/update-stats"]["post"]

    # Then it is POST with a bearer secret, an optional scope, and the SPEC's answers
    assert list(document["paths"]) == ["/cron/update-stats"]
    assert list(document["paths"]["/cron/update-stats"]) == ["post"]
    assert operation["security"] == [{SECURITY_SCHEME: []}]
    assert document["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"] == "bearer"
    assert sorted(operation["responses"]) == ["202", "400", "401", "503"]
    assert document["components"]["schemas"]["RefreshScope"]["enum"] == [
        scope.value for scope in RefreshScope
    ]
    assert "required" not in operation["requestBody"]


def test_the_handler_never_imports_a_database_driver() -> None:
    # Given a fresh interpreter with the Lambda layer and the functions on its path
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            str(ROOT / part) for part in ("layers/matchstats", "functions")
        ),
    }
    check = "import refresh_api.app, sys; assert 'psycopg' not in sys.modules, 'psycopg imported'"

    # When it imports the handler
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [sys.executable, "-c", check], env=environment, capture_output=True, text=True, check=False
    )

    # Then psycopg was not imported, directly or through matchstats
    assert result.returncode == 0, result.stderr
