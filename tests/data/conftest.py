import pytest

from ltjax.data import example


@pytest.fixture(scope="module")
def mine(tmp_path_factory):
  """The own-data example tree (5 classes, imbalance 20, val, test, open set), written once
  per test module; tests that change it work on a copy."""
  root = tmp_path_factory.mktemp("mine")
  example.write_example_dataset(str(root))
  return root
