# Root conftest: makes the repository root importable for tests (models, utils, genotypes, scripts).


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long`` (tens of seconds: torchrun, inductor compile, subprocess searches) run first, so
    that pytest-xdist's workers (pytest.ini) share them and the short tests fill in around them, instead of
    one worker finishing a long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: file order otherwise
