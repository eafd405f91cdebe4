"""sty: a declarative state compiler for PostgreSQL fleets described by Pigsty inventories.

One import namespace, four layers (docs/architecture.md):

- `sty.contract`: the manifest, file formats, activation actions, TARGET grammar and host order that the
  compiler writes and the apply stage reads. It imports nothing else of sty.
- `sty.compiler` (the repository's `compiler/`): inventory to bundles. Never imports `sty.apply`.
- `sty.apply` (the repository's `apply/`): bundles to hosts. Imports the compiler only through the contract.
- `sty.cli`: the `sty` command, the only place that wires the two sides together.

`sty.schemas` and `sty.templates` are package data (the repository's `schemas/` and `templates/`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sty-compiler")
except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
    __version__ = "0+unknown"
