"""Where the package data lives: `sty.schemas` and `sty.templates`, in a checkout or an installed wheel."""

import hashlib
from importlib.resources import files
from pathlib import Path

SCHEMAS = Path(str(files("sty.schemas")))
TEMPLATES = Path(str(files("sty.templates")))
CODE = Path(__file__).resolve().parent


def code_digest() -> str:
    """Digest of everything besides the inventory that shapes a bundle (code, schemas, templates)."""
    h = hashlib.sha256()
    for top, root in (("compiler", CODE), ("schemas", SCHEMAS), ("templates", TEMPLATES)):
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix not in (".pyc",) and "__pycache__" not in path.parts:
                h.update(f"{top}/{path.relative_to(root)}".encode())
                h.update(path.read_bytes())
    return h.hexdigest()
