"""The layer's requirements.txt lists exactly the project's runtime dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_layer_requirements_agree_with_pyproject() -> None:
    # Given the runtime dependencies in pyproject.toml and the layer's requirements.txt
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    layer = [
        line.strip()
        for line in (ROOT / "layers/matchstats/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    # Then they are the same list
    assert sorted(layer) == sorted(project)
