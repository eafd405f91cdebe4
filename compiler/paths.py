"""Where the package data lives: `sty.schemas` and `sty.templates`, in a checkout or an installed wheel."""

from importlib.resources import files
from pathlib import Path

SCHEMAS = Path(str(files("sty.schemas")))
TEMPLATES = Path(str(files("sty.templates")))
CODE = Path(__file__).resolve().parent
