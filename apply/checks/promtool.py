"""promtool: Prometheus' own judgement of the scrape config (with the file_sd target files it globs) and of
the alerting / recording rule files.

Files: a scrape config plus the target directory (`promtool check config`, which also reads and checks every
file_sd file its globs match), or a rules directory / rule files (`promtool check rules --lint-fatal`).
The config's file_sd globs are rewritten to the temporary copy of the target directory; a certificate the
apply stage provides gets a stand-in (promtool only parses it). Warnings (a glob matching no file) fail.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from . import FAIL, PASS, CheckContext, CheckResult, register
from .util import joined, replace_paths, require, run, standin_certificates, substitute, tmpdir


def _copy(ctx: CheckContext, path: str, root: Path) -> list[Path]:
    """Copy a bundle file or directory under root (secrets replaced); the copied files."""
    src = ctx.path(path)
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    out = []
    for f in files:
        rel = Path(path.lstrip("/")) / f.relative_to(src) if src.is_dir() else Path(path.lstrip("/"))
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(substitute(f.read_text(), ctx.secret))
        out.append(dst)
    return out


def _is_config(path: Path) -> bool:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(doc, dict) and ("scrape_configs" in doc or "global" in doc)


def _rebase_globs(doc: dict, root: Path) -> None:
    for job in doc.get("scrape_configs") or []:
        for sd in (job or {}).get("file_sd_configs") or []:
            sd["files"] = [f"{root}{g}" if str(g).startswith("/") else g for g in sd.get("files") or []]


@register("promtool")
def check(ctx: CheckContext) -> CheckResult:
    require("promtool", package="prometheus")
    out_parts, ok, notes = [], True, []
    with tmpdir("promtool") as tmp:
        root = tmp / "root"
        copied = {path: _copy(ctx, path, root) for path in ctx.files}
        configs = [f for path, fs in copied.items() if not ctx.path(path).is_dir() for f in fs if _is_config(f)]
        # with a config, the other files are its targets (checked through it); without, they are rule files
        rules = [] if configs else [f for fs in copied.values() for f in fs if f.suffix in (".yml", ".yaml")]
        for conf in configs:
            doc = yaml.safe_load(conf.read_text())
            _rebase_globs(doc, root)
            text = yaml.safe_dump(doc, sort_keys=False)
            standins, more = standin_certificates(ctx.manifest, [text], tmp)
            notes += more
            conf.write_text(replace_paths(text, standins))
            proc = run(["promtool", "check", "config", "--lint=none", str(conf)])
            out = joined(proc)
            ok = ok and proc.returncode == 0 and "WARNING" not in out
            out_parts.append(out)
        if rules:
            proc = run(["promtool", "check", "rules", "--lint=all", "--lint-fatal", *map(str, rules)])
            ok = ok and proc.returncode == 0
            out_parts.append(joined(proc))
        if not configs and not rules:
            return CheckResult("promtool", ctx.files, FAIL, "no scrape config or rule file among the files")
        out = "".join(out_parts).replace(str(root), "")
    return CheckResult("promtool", ctx.files, PASS if ok else FAIL, out, "; ".join(dict.fromkeys(notes)))
