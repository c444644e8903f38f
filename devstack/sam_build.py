"""`sam build` for `make invoke`: run it when a source changed since the last one, and
find a function's code and layers in what it built. Local tooling; never shipped to Lambda.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.function_specs import SERVERLESS_FUNCTION, SERVERLESS_LAYER, function_specs
from devstack.template import TEMPLATE_PATH, resources_of_type

REPO = TEMPLATE_PATH.parent
BUILD_DIR = REPO / ".aws-sam" / "build"


class BuildError(Exception):
    """`sam build` failed, or left no build of the function; `output` is what SAM printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class BuiltFunction:
    code_dir: Path  # Lambda's /var/task
    layer_dirs: list[Path]  # their contents are Lambda's /opt/python
    # Layers the template does not build (a published layer's ARN): SAM CLI would
    # download them from AWS.
    left_out: list[Any]


def sam_build(sam: Path, runtime_python: Path, build_dir: Path) -> None:
    """`sam build --cached` of the whole template into `build_dir`.

    Every function, not only the one invoked: a cached build takes as long either way
    (copying the layer's dependencies dominates), whereas `sam build <id>` wipes the
    other functions' builds, so switching functions would rebuild each time, and SAM
    CLI records its cache (build.toml) only on a full build: without one, each
    `sam build <id> --cached` downloads the layer's dependencies again and leaves
    another copy of them (about 60 MB) in .aws-sam/deps.
    """
    command = [
        str(sam),
        "build",
        "--cached",
        *("--template-file", str(TEMPLATE_PATH)),
        *("--build-dir", str(build_dir)),
        *("--cache-dir", str(build_dir.parent / "cache")),
    ]
    environment = {
        **os.environ,
        # lambda-builders looks for `python3.13` on PATH; the runtime venv has the real one
        # (a pyenv shim for an unselected version would not run).
        "PATH": f"{runtime_python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
    }
    # The output is shown on a failure only: SAM's banner of next steps does not apply.
    result = subprocess.run(
        command,
        cwd=REPO,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"sam build failed with exit code {result.returncode} (output above)",
            output=result.stdout.decode(errors="replace"),
        )


def sources_digest(template: dict[str, Any], runtime_python: Path) -> str:
    """A hash of everything `sam build` reads: the template, every function's CodeUri and
    layer's ContentUri tree, and the Python that builds them."""
    roots = set()
    for resource_type, uri in ((SERVERLESS_FUNCTION, "CodeUri"), (SERVERLESS_LAYER, "ContentUri")):
        for resource in resources_of_type(template, resource_type).values():
            location = (resource.get("Properties") or {}).get(uri)
            if isinstance(location, str):
                roots.add(REPO / location)
    digest = hashlib.sha256(f"{runtime_python}\0".encode())
    digest.update(TEMPLATE_PATH.read_bytes())
    for root in sorted(roots):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(f"\0{path.relative_to(REPO)}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def build_is_current(build_dir: Path, digest: str) -> bool:
    """True when the build came from the sources as they are now, and no other build
    (a `sam build` by hand) has replaced it since."""
    try:
        stamp = _stamp_path(build_dir).read_text().split()
        built_template = (build_dir / "template.yaml").read_bytes()
    except OSError:
        return False
    return stamp == [digest, hashlib.sha256(built_template).hexdigest()]


def record_build(build_dir: Path, digest: str) -> None:
    built_template = (build_dir / "template.yaml").read_bytes()
    _stamp_path(build_dir).write_text(f"{digest} {hashlib.sha256(built_template).hexdigest()}\n")


def _stamp_path(build_dir: Path) -> Path:
    return build_dir.parent / "invoke-build.sha256"


def built_function(build_dir: Path, logical_id: str) -> BuiltFunction:
    """Where the built template puts the function's code and its layers' `python/` dirs."""
    built_template = build_dir / "template.yaml"
    if not built_template.is_file():
        raise BuildError(f"no build in {build_dir}; run without --no-build")
    built = function_specs(built_template).get(logical_id)
    if built is None or not built.code_dir.is_dir():
        raise BuildError(f"{logical_id} is not built in {build_dir}; run without --no-build")
    return BuiltFunction(
        code_dir=built.code_dir,
        layer_dirs=[content / "python" for content in built.layer_dirs],
        left_out=list(built.external_layers),
    )
