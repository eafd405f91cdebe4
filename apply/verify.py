"""`sty verify TARGET`: prove the applied state with pytest-testinfra, checks generated from the manifests."""

from __future__ import annotations

import os
from pathlib import Path

from .bundle import Bundle, select_hosts
from .remote import SshOptions

TESTS = Path(__file__).with_name("verify_tests.py")


def verify(outdir: Path, target: str | None, ssh: SshOptions | None = None, extra: list[str] | None = None) -> int:
    """Run the generated checks against every selected host; pytest's exit code (0 = all green)."""
    import pytest

    ssh = ssh or SshOptions.from_env()
    hosts = select_hosts(Path(outdir), target)
    specs = []
    for ip in hosts:
        specs.append(f"paramiko://{Bundle.load(Path(outdir), ip).manifest.ssh.user}@{ip}")
    args = [str(TESTS), "-q", "-p", "no:cacheprovider", "--rootdir", str(TESTS.parent), f"--hosts={','.join(specs)}"]
    if ssh.config:
        args.append(f"--ssh-config={ssh.config}")
    if ssh.identity:
        args.append(f"--ssh-identity-file={ssh.identity}")
    os.environ["STY_VERIFY_OUTDIR"] = str(Path(outdir).resolve())
    return int(pytest.main([*args, *(extra or [])]))
