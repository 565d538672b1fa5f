"""The repository's pytest setup for every test path (tests/ and the contract suite in
src/plait/testing/contract): the contract suite runs on plait's server stores too."""

pytest_plugins = ["tests.contract.stores"]
