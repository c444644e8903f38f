"""Reading template.yaml as deployed, for the template's tests: a function's properties and
variables with Globals applied (as SAM merges them), and every IAM statement under a node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from devstack.template import resources_of_type

Template = dict[str, Any]


def function_resources(template: Template) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, "AWS::Serverless::Function")


def effective(template: Template, function_id: str, key: str) -> Any:
    """A function property as deployed: its own value, else the Globals value."""
    own = template["Resources"][function_id]["Properties"]
    return own.get(key, template.get("Globals", {}).get("Function", {}).get(key))


def deployed_environment(template: Template, function_id: str) -> dict[str, Any]:
    """The function's variables as deployed: SAM merges its own over the Globals ones."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    own = template["Resources"][function_id].get("Properties", {}).get("Environment", {})
    return {**globals_env.get("Variables", {}), **own.get("Variables", {})}


def iam_statements(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, statement) for every IAM policy statement anywhere under `node`, inline or in
    a role; `where` is the path of `node` itself."""
    if isinstance(node, dict):
        if "Effect" in node and ({"Action", "NotAction"} & node.keys()):
            yield where, node
        for key, value in node.items():
            yield from iam_statements(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from iam_statements(item, f"{where}[{index}]")


def as_list(value: Any) -> list[Any]:
    """An IAM Action or Resource, which may be one value or a list, as a list."""
    return value if isinstance(value, list) else [value]


def scalars(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) for every string anywhere under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from scalars(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from scalars(item, f"{where}[{index}]")
    elif isinstance(node, str):
        yield where, node
