"""The contract between the compiler and the apply stage: what a bundle is, nothing about how it is made.

Both sides import this package; it imports nothing else of sty (enforced by `make lint-code`).

- `manifest`: the typed per-host manifest (`outputs/<host>.yml`), its one writer and one reader, versioned.
- `formats`: the closed set of file formats; each owns its template quoting and its secret escaping.
- `actions`: the activation vocabulary, each action declared once with the module that handles it.
- `targets`: the TARGET grammar (`10.10.10.11`, `pg-test`, `infra,pg-test`, `all`) and the order of hosts.
- `exits`: the exit codes every command shares.
"""
