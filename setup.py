"""Maps the repository's top-level folders onto one import namespace, `sty` (metadata is in pyproject.toml).

`compiler/` installs as `sty.compiler`, `apply/` as `sty.apply`, `schemas/` and `templates/` as package data;
every sub-package is found here, so adding a fleet module folder needs no packaging change.
"""

from setuptools import find_namespace_packages, find_packages, setup

CODE = {"sty": "sty", "sty.compiler": "compiler", "sty.apply": "apply"}
DATA = {"sty.schemas": "schemas", "sty.templates": "templates"}


def packages() -> list[str]:
    found = [f"{name}.{sub}" for name, folder in CODE.items() for sub in find_packages(folder)]
    found += [f"{name}.{sub}" for name, folder in DATA.items() for sub in find_namespace_packages(folder)]
    return sorted([*CODE, *DATA, *(p for p in found if "__pycache__" not in p)])


setup(package_dir={**CODE, **DATA}, packages=packages())
