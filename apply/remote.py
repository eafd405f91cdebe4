"""SSH to a host with paramiko (key auth, host keys checked), rsync to it, and run the agent there.

Connection details come from the manifest (`ssh: {host, port, user}`); an OpenSSH client config
(`--ssh-config` or `$STY_SSH_CONFIG`) may add the identity and known-hosts file. Unknown host keys
are refused: sty never trusts on first use.

One SSH connection per host, opened on first use and reused by every command: a command is one exec channel
on it, its standard input written to the channel (no length limit, nothing in the host's process list), its
output read until the command ends. Each connect and command is timed (`Remote.spent`), for `STY_TIMINGS`.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import time
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
class Result:
    """What a command on a host did (the fields the callers read of fabric's Result before)."""

    command: str
    stdout: str
    stderr: str
    exited: int


def label(command: str) -> str:
    """A short name of a command for the timings: `agent look`, `systemctl is-active`, `rsync`."""
    words = command.split()
    if words[:1] == ["python3"] and len(words) >= 3:
        return f"agent {words[-1]}"
    return " ".join(words[:2])[:40]


@dataclass
class Remote:
    """One SSH connection to one host, opened on first use and reused by every command."""

    address: str
    port: int
    user: str
    options: SshOptions
    _conn: Any = field(default=None, repr=False)  # fabric's Connection, for testinfra (apply/verify_tests.py)
    _client: Any = field(default=None, repr=False)  # paramiko's SSHClient, for everything sty runs itself
    spent: list[tuple[str, float]] = field(default_factory=list, repr=False)  # (what, seconds), in order

    @classmethod
    def from_manifest(cls, manifest: Manifest, options: SshOptions) -> Remote:
        return cls(manifest.ssh.host, manifest.ssh.port, manifest.ssh.user, options)

    @property
    def sudo(self) -> str:
        return "" if self.user == "root" else "sudo -n "

    def connection(self):
        if self._conn is None:
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
            _trust(client, known)
            self._conn = conn
        return self._conn

    def client(self):
        """The host's SSH connection (paramiko), opened on first use: the same trust settings as `connection`."""
        if self._client is None:
            import paramiko

            started = time.monotonic()
            found = self.options.lookup(self.address)
            identity = self.options.identity or (found.get("identityfile") or [None])[0]
            known = self.options.known_hosts or found.get("userknownhostsfile")
            client = paramiko.SSHClient()
            _trust(client, known)
            connect: dict[str, Any] = {"timeout": self.options.timeout, "allow_agent": False, "look_for_keys": False}
            if identity:
                connect["key_filename"] = os.path.expanduser(identity)
            else:
                connect["look_for_keys"] = True
            try:
                client.connect(found.get("hostname", self.address), port=self.port, username=self.user, **connect)
            except Exception as exc:  # paramiko/socket errors: unreachable, key rejected ...
                client.close()
                raise RemoteError(f"{self.address}: {type(exc).__name__}: {exc}") from None
            self._client = client
            self.spent.append(("connect", time.monotonic() - started))
        return self._client

    def run(self, command: str, stdin: str | None = None, check: bool = True, timeout: float | None = 300) -> Result:
        """Run a shell command on the host, `stdin` written to its standard input. Raises RemoteError on failure
        (and when `check`, on a non-zero exit)."""
        started = time.monotonic()
        try:
            result = self._exec(self.sudo + command, stdin, timeout)
        except RemoteError:
            raise
        except Exception as exc:  # paramiko/socket errors: connection lost ...
            raise RemoteError(f"{self.address}: {type(exc).__name__}: {exc}") from None
        finally:
            self.spent.append((label(command), time.monotonic() - started))
        if check and result.exited != 0:
            said = (result.stderr or result.stdout).strip()
            raise RemoteError(f"{self.address}: `{command}` exited {result.exited}: {said}")
        return result

    def _exec(self, command: str, stdin: str | None, timeout: float | None) -> Result:
        """One exec channel on the connection: the command's output until it ends (end of output and exit status,
        as fabric waited), or RemoteError after `timeout` seconds."""
        transport = self.client().get_transport()
        if transport is None or not transport.is_active():  # dropped since (sshd restarted ...): connect again
            self.close()
            transport = self.client().get_transport()
        deadline = None if timeout is None else time.monotonic() + timeout
        chan = transport.open_session(timeout=self.options.timeout)
        try:
            chan.exec_command(command)
            if stdin:
                try:
                    chan.sendall(stdin.encode())
                except OSError:  # the command ended without reading it: its exit status says what happened
                    pass
            chan.shutdown_write()  # end of input: nothing waits for more
            out, err = bytearray(), bytearray()
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                if chan.closed or (chan.eof_received and chan.exit_status_ready()):
                    if not (chan.recv_ready() or chan.recv_stderr_ready()):
                        break
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise RemoteError(f"{self.address}: `{command}` did not finish within {timeout:.0f}s")
                wait = 1.0 if left is None else min(left, 1.0)
                if chan.eof_received:  # output complete: only the exit status is still to come
                    chan.status_event.wait(wait)
                else:
                    select.select([chan], [], [], wait)
            code = chan.recv_exit_status()
        finally:
            chan.close()
        return Result(command, out.decode(errors="replace"), err.decode(errors="replace"), code)

    def agent(self, operation: str, request: dict, staged: bool = True) -> dict:
        """Run the staged agent with a JSON request on its standard input; its JSON answer, or RemoteError with its
        message. Unstaged, the agent is sent in the command line (reading a host before anything is written to
        it)."""
        program = f"{REMOTE_ROOT}/stage/agent.py" if staged else f"-c {shlex.quote(AGENT.read_text())}"
        result = self.run(f"python3 -S {program} {operation}", stdin=json.dumps(request), check=False)
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
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        self.spent.append(("rsync", time.monotonic() - started))
        if proc.returncode != 0:
            raise RemoteError(f"{self.address}: rsync failed: {proc.stderr.strip()}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._client is not None:
            self._client.close()
            self._client = None


def _trust(client: Any, known: str | None) -> None:
    """sty's host-key rule for every paramiko client: only keys of the configured known-hosts files (or the
    system's), anything else rejected."""
    import paramiko

    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if known:
        for path in str(known).split():
            client.load_host_keys(os.path.expanduser(path))
    else:
        client.load_system_host_keys()
