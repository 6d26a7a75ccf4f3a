"""Every module of the installed package imports, and its docstring examples hold."""
import doctest
import importlib
import pkgutil

import pytest

from support import REPO

SUBPACKAGES = sorted(p.parent.name for p in REPO.glob("*/__init__.py"))  # every subpackage of the checkout


def modules() -> list[str]:
    names = []
    for sub in SUBPACKAGES:
        package = importlib.import_module(f"groundcot.{sub}")
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    return names


def test_every_subpackage_has_modules():
    assert len(modules()) > 40


@pytest.mark.parametrize("name", modules())
def test_module_imports_and_its_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
