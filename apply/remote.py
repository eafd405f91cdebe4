"""SSH to a host with fabric (key auth, host keys checked), rsync to it, and run the agent there.

Connection details come from the manifest (`ssh: {host, port, user}`); an OpenSSH client config
(`--ssh-config` or `$STY_SSH_CONFIG`) may add the identity and known-hosts file. Unknown host keys
are refused: sty never trusts on first use.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sty.contract.manifest import Manifest

AGENT = Path(__file__).with_name("agent.py")
REMOTE_ROOT = "/var/lib/sty"


class RemoteError(Exception):
    """A command on the host failed; the message carries the program's own words."""


@dataclass
class SshOptions:
    config: str | None = None  # OpenSSH client config file
    identity: str | None = None
    known_hosts: str | None = None
    timeout: float = 15.0

    @classmethod
    def from_env(cls, config: str | None = None, identity: str | None = None, known_hosts: str | None = None):
        return cls(
            config=config or os.environ.get("STY_SSH_CONFIG"),
            identity=identity or os.environ.get("STY_SSH_IDENTITY"),
            known_hosts=known_hosts or os.environ.get("STY_SSH_KNOWN_HOSTS"),
        )

    def lookup(self, host: str) -> dict[str, Any]:
        if not self.config:
            return {}
        import paramiko

        cfg = paramiko.SSHConfig.from_path(self.config)
        return cfg.lookup(host)

    def ssh_command(self, port: int) -> list[str]:
        """The `ssh` command rsync uses, with the same trust settings as fabric."""
        cmd = ["ssh", "-p", str(port), "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
        if self.config:
            cmd += ["-F", self.config]
        if self.identity:
            cmd += ["-i", self.identity]
        if self.known_hosts:
            cmd += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return cmd


@dataclass
class Remote:
    """One SSH session to one host, opened on first use."""

    address: str
    port: int
    user: str
    options: SshOptions
    _conn: Any = field(default=None, repr=False)

    @classmethod
    def from_manifest(cls, manifest: Manifest, options: SshOptions) -> Remote:
        return cls(manifest.ssh.host, manifest.ssh.port, manifest.ssh.user, options)

    @property
    def sudo(self) -> str:
        return "" if self.user == "root" else "sudo -n "

    def connection(self):
        if self._conn is None:
            import paramiko
            from fabric import Config, Connection

            found = self.options.lookup(self.address)
            identity = self.options.identity or (found.get("identityfile") or [None])[0]
            known = self.options.known_hosts or found.get("userknownhostsfile")
            connect: dict[str, Any] = {"timeout": self.options.timeout, "allow_agent": False, "look_for_keys": False}
            if identity:
                connect["key_filename"] = os.path.expanduser(identity)
            else:
                connect["look_for_keys"] = True
            conn = Connection(
                host=found.get("hostname", self.address),
                user=self.user,
                port=self.port,
                connect_kwargs=connect,
                config=Config(overrides={"load_ssh_configs": False}),
            )
            client = conn.client
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            if known:
                for path in str(known).split():
                    client.load_host_keys(os.path.expanduser(path))
            else:
                client.load_system_host_keys()
            self._conn = conn
        return self._conn

    def run(self, command: str, stdin: str | None = None, check: bool = True, timeout: float | None = 300):
        """Run a shell command on the host; returns fabric's Result. Raises RemoteError on failure."""
        conn = self.connection()
        if stdin is not None:  # carried in the command line: invoke's stdin pump is slow (seconds per call)
            data = base64.b64encode(stdin.encode()).decode()
            command = (
                f"echo {data} | base64 -d | {self.sudo}{command}"
                if self.sudo
                else f"echo {data} | base64 -d | {command}"
            )
            prefix = ""
        else:
            prefix = self.sudo
        try:
            result = conn.run(prefix + command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except Exception as exc:  # paramiko/socket errors: unreachable, key rejected ...
            raise RemoteError(f"{self.address}: {type(exc).__name__}: {exc}") from None
        if check and result.exited != 0:
            said = (result.stderr or result.stdout).strip()
            raise RemoteError(f"{self.address}: `{command}` exited {result.exited}: {said}")
        return result

    def agent(self, operation: str, request: dict, staged: bool = True) -> dict:
        """Run the staged agent with a JSON request; its JSON answer, or RemoteError with its message. Unstaged,
        the agent is sent in the command line (reading a host before anything is written to it)."""
        program = f"{REMOTE_ROOT}/stage/agent.py" if staged else f"-c {shlex.quote(AGENT.read_text())}"
        result = self.run(f"python3 {program} {operation}", stdin=json.dumps(request), check=False)
        try:
            answer = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            said = (result.stderr or result.stdout).strip()
            raise RemoteError(f"{self.address}: agent {operation} failed: {said}") from None
        if result.exited != 0 or "error" in answer:
            raise RemoteError(f"{self.address}: agent {operation}: {answer.get('error', result.stderr)}")
        return answer

    def rsync(self, local_dir: Path, remote_dir: str) -> None:
        """Mirror a local directory to the host (checksums, deletes what the new stage lacks)."""
        self.run(f"mkdir -p {shlex.quote(remote_dir)}")
        ssh = " ".join(shlex.quote(x) for x in self.options.ssh_command(self.port))
        cmd = ["rsync", "-a", "--checksum", "--delete", "-e", ssh]
        if self.sudo:
            cmd += ["--rsync-path", "sudo -n rsync"]
        cmd += [f"{local_dir}/", f"{self.user}@{self.address}:{remote_dir}/"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RemoteError(f"{self.address}: rsync failed: {proc.stderr.strip()}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
