"""The sizes sty accepts from an inventory, which arrives in a pull request while sty may run as root: its
size, and what YAML aliases make of it, are bounded before anything walks the data (digests and validation expand
every alias). A module of its own so that the whole-fleet shortcut (compiler/noop.py) reads the same limit without
importing the loader."""

MAX_BYTES = 4 * 1024 * 1024  # Pigsty's largest example is under 100 KiB; a 1000-host fleet about 150 KiB
MAX_VALUES = 250_000  # YAML nodes after alias expansion; a generated 1000-host fleet has about 14,000
MAX_CHARS = 16 * 1024 * 1024  # characters of scalars after alias expansion
MAX_DEPTH = 64  # nesting; real inventories stay under 15
