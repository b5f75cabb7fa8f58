import pytest

from orchestrator.inputs import hub
from orchestrator.recipe import model as recipe
from orchestrator.tools import toolchain

from ..helpers import REPO



@pytest.fixture(scope="session")
def tools():
    return toolchain.find()  # `make test` builds them first


@pytest.fixture(scope="session")
def demo_model():
    return hub.fetch_model(recipe.load(REPO / "recipes" / "demo.yaml").model, REPO)
