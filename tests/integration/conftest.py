from pathlib import Path

import pytest

from orchestrator.inputs import hub
from orchestrator.recipe import model as recipe
from orchestrator.tools import toolchain

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def tools():
    return toolchain.find()  # `make test` builds them first


@pytest.fixture(scope="session")
def demo_model():
    return hub.fetch_model(recipe.load(REPO / "recipes" / "demo.yaml").model, REPO)


def small_recipe(tmp_path: Path, model: Path, name: str = "itest", ctx: int = 128, chunks: int = 3,
                 pairs=(("f16", "f16"), ("q4_0", "q4_0")), weights=("Q8_0", "Q2_K"), bench=True,
                 corpus: str = "python-docs") -> Path:
    text = f"""\
name: {name}
model: {{path: {model}}}
reference: F16
weights: [{', '.join(weights)}]
cache:
  pairs: [{', '.join(f'[{k}, {v}]' for k, v in pairs)}]
evaluation: {{corpus: {corpus}, ctx: {ctx}, chunks: {chunks}, batch: 512}}
bench: {{enabled: {str(bench).lower()}, prompt: 16, gen: 4, repetitions: 1}}
"""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path
