"""sty: a declarative state compiler for PostgreSQL fleets described by Pigsty inventories.

One import namespace, four layers (docs/architecture.md):

- `sty.contract`: the manifest, file formats, activation actions, TARGET grammar and host order that the
  compiler writes and the apply stage reads. It imports nothing else of sty.
- `sty.compiler` (the repository's `compiler/`): inventory to bundles. Never imports `sty.apply`.
- `sty.apply` (the repository's `apply/`): bundles to hosts. Imports the compiler only through the contract.
- `sty.cli`: the `sty` command, the only place that wires the two sides together.

`sty.schemas` and `sty.templates` are package data (the repository's `schemas/` and `templates/`).
"""


def __getattr__(name: str) -> str:
    """`sty.__version__`, read from the installed metadata only when asked: importlib.metadata costs about 40 ms
    of every command's start, and `sty build` with nothing to do takes well under half a second."""
    if name != "__version__":
        raise AttributeError(name)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sty-compiler")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
        return "0+unknown"
