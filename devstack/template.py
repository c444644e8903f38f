"""Read template.yaml as plain data, for tests and for the local stack.

CloudFormation short tags (`!Ref X`, `!GetAtt A.B`, `!Sub ...`) are not YAML that a
stock loader accepts; they become the long JSON forms CloudFormation itself uses:
`{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "B"]}`, `{"Fn::Sub": ...}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"

# Tags whose long form is not simply "Fn::" + the tag name.
_LONG_NAMES = {"Ref": "Ref", "Condition": "Condition"}


# PyYAML ships no type information unless types-PyYAML is installed.
class _CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]
    """SafeLoader plus CloudFormation short tags, minus YAML 1.1 timestamps.

    Without the timestamp rule removed, `AWSTemplateFormatVersion: 2010-09-09`
    unquoted would load as a date, not the string CloudFormation reads.
    """


_CloudFormationLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(
            None, None, f"unexpected node for !{suffix}", node.start_mark
        )
    if suffix == "GetAtt" and isinstance(value, str):
        # "Resource.Attribute.Part" names attribute "Attribute.Part" of "Resource".
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {_LONG_NAMES.get(suffix, f"Fn::{suffix}"): value}


_CloudFormationLoader.add_multi_constructor("!", _construct_short_tag)


def load_template(path: Path | str = TEMPLATE_PATH) -> dict[str, Any]:
    """Return the template at `path` as plain dicts, lists and scalars."""
    with Path(path).open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=_CloudFormationLoader)  # noqa: S506 (a SafeLoader)
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a CloudFormation template (top level is not a mapping)")
    return document


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of `resource_type` (e.g. AWS::SQS::Queue)."""
    resources: dict[str, dict[str, Any]] = template.get("Resources", {})
    return {
        logical_id: resource
        for logical_id, resource in resources.items()
        if resource.get("Type") == resource_type
    }
