"""The template's functions as the template declares them (FunctionSpec: code, handler,
runtime, limits, layers, events, Globals applied), and their environment variables
resolved as SAM CLI resolves them locally.

Local tooling only; nothing here ships to Lambda.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.lambda_context import LOCAL_ACCOUNT_ID
from devstack.template import TEMPLATE_PATH, load_template, resources_of_type

# Lambda's defaults, when neither Globals nor the function say otherwise.
_DEFAULT_TIMEOUT_S = 3
_DEFAULT_MEMORY_MB = 128
_DEFAULT_ARCHITECTURE = "x86_64"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"

Resolver = Callable[[Any], str | None]


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function of a template, its Globals applied."""

    logical_id: str
    code_dir: Path
    handler: str  # module.function, e.g. app.lambda_handler
    runtime: str  # e.g. python3.13
    architecture: str  # x86_64 or arm64
    timeout_s: int
    memory_mb: int
    environment: dict[str, Any]  # unresolved template values
    # The ContentUri of each layer that the same template builds, in the function's order;
    # any other layer (a published one's ARN) as written, in `external_layers`.
    layer_dirs: tuple[Path, ...] = ()
    external_layers: tuple[Any, ...] = ()
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def events_of_type(self, *types: str) -> list[dict[str, Any]]:
        return [event for event in self.events.values() if event.get("Type") in types]


def function_specs(template_path: Path = TEMPLATE_PATH) -> dict[str, FunctionSpec]:
    return function_specs_of(load_template(template_path), template_path.parent)


def function_specs_of(template: dict[str, Any], base_dir: Path) -> dict[str, FunctionSpec]:
    """function_specs() of a template already read; its CodeUri and ContentUri paths are
    relative to `base_dir`."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    layers_built_here = resources_of_type(template, SERVERLESS_LAYER)
    specs = {}
    for logical_id, resource in resources_of_type(template, SERVERLESS_FUNCTION).items():
        own = resource.get("Properties") or {}
        properties = {**globals_, **own}
        # SAM merges Globals' variables into the function's rather than replacing them.
        environment = {**_variables(globals_), **_variables(own)}
        layer_dirs, external_layers = _split_layers(
            properties.get("Layers") or [], layers_built_here, base_dir
        )
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=(base_dir / own["CodeUri"]).resolve(),
            handler=properties.get("Handler", "app.lambda_handler"),
            runtime=str(properties.get("Runtime", "")),
            architecture=str((properties.get("Architectures") or [_DEFAULT_ARCHITECTURE])[0]),
            timeout_s=int(properties.get("Timeout", _DEFAULT_TIMEOUT_S)),
            memory_mb=int(properties.get("MemorySize", _DEFAULT_MEMORY_MB)),
            environment=environment,
            layer_dirs=layer_dirs,
            external_layers=external_layers,
            events=own.get("Events", {}),
        )
    return specs


def _split_layers(
    layers: list[Any], built_here: Mapping[str, dict[str, Any]], base_dir: Path
) -> tuple[tuple[Path, ...], tuple[Any, ...]]:
    """The content dirs of the layers that the template builds, and the other layers."""
    dirs, others = [], []
    for layer in layers:
        name = layer.get("Ref") if isinstance(layer, dict) else None
        if isinstance(name, str) and name in built_here:
            dirs.append((base_dir / str(built_here[name]["Properties"]["ContentUri"])).resolve())
        else:
            others.append(layer)
    return tuple(dirs), tuple(others)


def _variables(properties: Mapping[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = (properties.get("Environment") or {}).get("Variables") or {}
    return variables


def resolve_environment(
    spec: FunctionSpec, resolve: Resolver, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The function's variables: literals as SAM CLI writes them, template references
    resolved by `resolve` (None drops the variable: it names something that exists only
    in AWS), then `overrides`."""
    resolved: dict[str, str] = {}
    for name, value in spec.environment.items():
        text = resolve(value) if isinstance(value, dict) else environment_string(value)
        if text is not None:
            resolved[name] = text
    resolved.update(overrides)
    return resolved


def parameter_resolver(template: Mapping[str, Any], region: str) -> Resolver:
    """A resolver of what the template alone answers: a !Ref to a pseudo parameter or to
    a parameter with a default. Anything else (a queue's URL, a secret's ARN, a parameter
    without a default) only a deployment knows: None."""
    parameters = template.get("Parameters") or {}
    pseudo_parameters = {
        "AWS::Region": region,
        "AWS::AccountId": LOCAL_ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }

    def resolve(value: Any) -> str | None:
        if not isinstance(value, dict) or set(value) != {"Ref"}:
            return None
        name = value["Ref"]
        if name in pseudo_parameters:
            return pseudo_parameters[name]
        parameter = parameters.get(name)
        if not isinstance(parameter, dict) or "Default" not in parameter:
            return None
        return environment_string(parameter["Default"])

    return resolve


def environment_string(value: Any) -> str | None:
    """A template or env.json value as SAM CLI puts it in the environment (a boolean
    as true or false, null as empty); None for a list or a map, which it cannot."""
    if isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
