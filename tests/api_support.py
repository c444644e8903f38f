"""RefreshApiFunction's handler with dependencies handed in the way Powertools documents
for `Depends`: through the resolver's dependency_overrides, for one invocation."""

from __future__ import annotations

from typing import Any

from devstack.lambda_context import LambdaContext
from matchstats.api import ApiDependencies
from refresh_api import app


def invoke_api(event: dict[str, Any], deps: ApiDependencies) -> dict[str, Any]:
    """The handler's raw answer to `event`, with `deps` in place of the environment's."""
    context = LambdaContext.for_invocation("RefreshApiFunction", timeout_s=10)
    app.app.dependency_overrides[app.dependencies] = lambda: deps
    try:
        return app.lambda_handler(event, context)
    finally:
        app.app.dependency_overrides.pop(app.dependencies, None)
