"""The on-host half of `sty apply`: a standard-library-only script the control side runs on a host.

It is shipped with the staged bundle and invoked as `python3 agent.py OPERATION` with a JSON request on
stdin; it answers with JSON on stdout. Keeping every file-system decision in one script means one SSH
round trip per step and the same logic on every host, whatever its distribution.

Operations
  inspect   state of managed paths: exists, sha256, owner, group, mode (and content when asked)
  look      inspect, plus the state of units and a read-only probe: the whole first pass of an apply, one round trip
  ensure    OS users and directories the manifest lists (idempotent)
  install   copy staged files into place atomically, backing up what they replace
  remove    delete files a bundle no longer contains, backing them up
  restore   put back everything a run changed, from its backups
  record    write the record of what was applied (/var/lib/sty/applied.json)

The agent runs as root and its requests come from bundles built out of reviewed but untrusted pull requests,
and the directories it writes into are often owned by service users (the dbsu owns /pg/...). So every
target must be an absolute, normalised path; directories are walked one component at a time from `/` with
O_NOFOLLOW, a symbolic link being followed only when root made it in a directory only root can change (the
links a distribution or Pigsty itself sets up, such as /pg); the final component is never followed: files
are written to a fresh temporary name (O_EXCL|O_NOFOLLOW) and renamed over it, removed with unlink.
"""

from __future__ import annotations

import grp
import json
import os
import posixpath
import pwd
import stat
import subprocess
import sys

try:  # CPython's own SHA-256: hashlib loads OpenSSL first, a fifth of a whole `look` (the agent starts per command)
    from _sha256 import sha256 as _sha256  # Python up to 3.11
except ImportError:
    try:
        from _sha2 import sha256 as _sha256  # Python 3.12 on
    except ImportError:  # a Python built without them (FIPS builds): OpenSSL's
        from hashlib import sha256 as _sha256

STATE_DIR = "/var/lib/sty"
RECORD = os.path.join(STATE_DIR, "applied.json")
BACKUPS = os.path.join(STATE_DIR, "backup")
BEGIN, END = "# BEGIN sty", "# END sty"


def sha256(data: bytes) -> str:
    return _sha256(data).hexdigest()


# -- paths walked without following links nobody trusted ------------------------------------------------------


def check_target(path: object) -> str:
    """`path` when it is an absolute, normalised, one-line path below `/`; ValueError otherwise."""
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or path == "/"
        or any(c in path for c in "\x00\n\r")
        or posixpath.normpath(path) != path
        or path.startswith("//")
    ):
        raise ValueError(f"{path!r} is not an absolute normalised path; refusing it")
    return path


def _trusted_link(dir_fd: int, st: os.stat_result) -> bool:
    """A link root (or this user) made in a directory nobody else can change: safe to follow. Any other link
    may have been planted by a service user to redirect a root write (to /etc/shadow, say)."""
    me = os.geteuid()
    parent = os.fstat(dir_fd)
    locked = not (parent.st_mode & 0o022) or bool(parent.st_mode & stat.S_ISVTX)
    return st.st_uid in (0, me) and parent.st_uid in (0, me) and locked


def open_dir(path: str, create: bool = False) -> int | None:
    """An fd of directory `path`, walked from `/` component by component (see the module docstring); missing
    directories are made 0755 when `create`, else None is returned."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in [p for p in path.split("/") if p]:
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                os.mkdir(part, 0o755, dir_fd=fd)
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            flags = os.O_RDONLY | os.O_DIRECTORY
            if stat.S_ISLNK(st.st_mode):
                if not _trusted_link(fd, st):
                    raise ValueError(f"{path}: {part} is a symbolic link root did not make; refusing to follow it")
            else:
                flags |= os.O_NOFOLLOW
            nfd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _final(dir_fd: int, name: str, path: str) -> os.stat_result | None:
    """lstat of a target's last component; a link root did not make is refused, a directory too."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode) and not _trusted_link(dir_fd, st):
        raise ValueError(f"{path} is a symbolic link root did not make; refusing to write through it")
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path} is a directory; refusing to replace it with a file")
    return st


def read_target(path: str) -> tuple[bytes, os.stat_result] | None:
    """Content and stat of a live file, None when absent; never through a link root did not make."""
    check_target(path)
    fd = open_dir(posixpath.dirname(path))
    if fd is None:
        return None
    try:
        name = posixpath.basename(path)
        st = _final(fd, name, path)
        if st is None:
            return None
        flags = os.O_RDONLY | os.O_NONBLOCK | (0 if stat.S_ISLNK(st.st_mode) else os.O_NOFOLLOW)
        ffd = os.open(name, flags, dir_fd=fd)
        with os.fdopen(ffd, "rb") as fh:
            fst = os.fstat(fh.fileno())
            if not stat.S_ISREG(fst.st_mode):
                raise ValueError(f"{path} is not a regular file")
            return fh.read(), fst
    finally:
        os.close(fd)


def split_block(text: str) -> tuple[str, str | None, str]:
    """(before, block or None, after) of the sty-managed block inside an OS-owned file."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(BEGIN)), None)
    if start is None:
        return text, None, ""
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(END)), len(lines) - 1)
    return "".join(lines[:start]), "".join(lines[start : end + 1]), "".join(lines[end + 1 :])


def live_content(path: str, kind: str) -> bytes | None:
    found = read_target(path)
    if found is None:
        return None
    data = found[0]
    if kind == "block":
        _, block, _ = split_block(data.decode("utf-8", "replace"))
        return None if block is None else block.encode()
    return data


def owner_of(st: os.stat_result) -> tuple[str, str]:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return user, group


def ids(owner: str, group: str) -> tuple[int, int]:
    """uid and gid of names (or of the numbers `owner_of` gives for ids without a name)."""
    uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
    gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    return uid, gid


def op_inspect(req: dict) -> dict:
    out = {}
    for f in req["files"]:
        path, kind = check_target(f["path"]), f.get("kind", "file")
        found = read_target(path)
        data = found and (found[0] if kind == "file" else live_content(path, kind))
        if found is None or data is None:
            out[path] = {"exists": False}
            continue
        entry = {"exists": True, "sha256": sha256(data)}
        if kind == "file":
            entry["owner"], entry["group"] = owner_of(found[1])
            entry["mode"] = format(found[1].st_mode & 0o7777, "04o")
        if req.get("content"):
            entry["content"] = data.decode("utf-8", "replace")
        out[path] = entry
    record = None
    if os.path.exists(RECORD):
        with open(RECORD) as fh:
            record = json.load(fh)
    return {"files": out, "record": record}


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def op_look(req: dict) -> dict:
    """`inspect`, plus what `systemctl is-active` and `is-enabled` print for the units (one word per unit, as the
    control side read them from the commands themselves) and the output of the read-only probe of packages, users
    and directories (a shell script the control side wrote from the manifest, quoted there): the first pass of an
    apply in one round trip. The commands run while the files are read. Nothing is written."""
    units = [str(u) for u in req.get("units") or []]
    for unit in units:
        if not unit or unit.startswith("-") or any(c.isspace() or c == "\x00" for c in unit):
            raise ValueError(f"{unit!r} is not a unit name; refusing it")
    started = {}
    if units:
        for verb in ("is-active", "is-enabled"):
            started[verb] = _start(["systemctl", verb, "--", *units])
    if req.get("probe"):
        started["probe"] = _start(["sh", "-c", req["probe"]])
    try:
        out = op_inspect(req)
    finally:
        said = {key: proc.communicate()[0] for key, proc in started.items()}
    for verb in ("is-active", "is-enabled"):
        out[verb] = said[verb].split() if verb in said else []
    if "probe" in said:
        out["probe"] = said["probe"]
    return out


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def op_ensure(req: dict) -> dict:
    changed = []
    for user in req.get("users", []):
        try:
            pwd.getpwnam(user["name"])
            continue
        except KeyError:
            pass
        cmd = ["useradd", "--user-group", "--shell", "/bin/bash"]
        if user.get("system", True):
            cmd.append("--system")
        if user.get("uid") is not None:
            cmd += ["--uid", str(user["uid"])]
        if user.get("home"):
            cmd += ["--home-dir", user["home"], "--create-home"]
        run([*cmd, user["name"]])
        changed.append(f"user {user['name']}")
    for d in req.get("directories", []):
        changed += ensure_directory(check_target(d["path"]), d["owner"], d["group"], int(d["mode"], 8))
    return {"changed": changed}


def ensure_directory(path: str, owner: str, group: str, mode: int) -> list[str]:
    """Make a directory and set its owner and mode through an fd: a chown by path would follow a link a
    service user planted in its place (/pg/data -> /etc) and hand the target to that user."""
    changed = []
    if open_dir(path) is None:
        changed.append(f"directory {path}")
    fd = open_dir(path, create=True)
    assert fd is not None
    try:
        st = os.fstat(fd)
        if owner_of(st) != (owner, group):
            os.fchown(fd, *ids(owner, group))
            changed.append(f"owner of {path}")
        if st.st_mode & 0o7777 != mode:
            os.fchmod(fd, mode)
            changed.append(f"mode of {path}")
    finally:
        os.close(fd)
    return changed


def backup(run_id: str, path: str, created: list[str]) -> None:
    """Keep a copy of `path` before it changes (a link is kept as a link); remember paths that did not exist."""
    target = os.path.join(BACKUPS, run_id, "files", path.lstrip("/"))
    if os.path.lexists(target) or path in created:
        return
    fd = open_dir(posixpath.dirname(path))
    try:
        st = None if fd is None else _final(fd, posixpath.basename(path), path)
        if st is None:
            created.append(path)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(posixpath.basename(path), dir_fd=fd), target)
            return
        found = read_target(path)
        assert found is not None
        _write_new(target, found[0], st.st_uid, st.st_gid, st.st_mode & 0o7777)
    finally:
        if fd is not None:
            os.close(fd)


def _write_new(path: str, data: bytes, uid: int, gid: int, mode: int) -> None:
    """A backup copy: a new file in the agent's own state directory, with the original's owner and mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        os.fchown(fh.fileno(), uid, gid)
        os.fchmod(fh.fileno(), mode)


def write_atomic(path: str, data: bytes, owner: str, group: str, mode: str) -> None:
    """A fresh temporary file beside `path` (O_EXCL|O_NOFOLLOW), owner and mode set through its fd, fsync,
    rename over `path`: readers see the old file or the new one, and no planted link is written through."""
    check_target(path)
    fd = open_dir(posixpath.dirname(path), create=True)
    assert fd is not None
    name = posixpath.basename(path)
    tmp = f".sty-{os.urandom(6).hex()}"
    try:
        _final(fd, name, path)
        tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        try:
            with os.fdopen(tfd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fchown(fh.fileno(), *ids(owner, group))
                os.fchmod(fh.fileno(), int(mode, 8))
                os.fsync(fh.fileno())
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=fd)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def merged_block(path: str, block: str, position: str) -> tuple[bytes, str, str, str]:
    """The OS file with our block replaced (or added); keeps the file's owner and mode."""
    found = read_target(path)
    if found is None:
        text, owner, group, mode = "", "root", "root", "0644"
    else:
        text = found[0].decode("utf-8")
        owner, group = owner_of(found[1])
        mode = format(found[1].st_mode & 0o7777, "04o")
    before, old, after = split_block(text)
    if old is None:
        if position == "top":
            before, after = "", text
        else:
            before = text if not text or text.endswith("\n") else text + "\n"
            after = ""
    return (before + block + after).encode(), owner, group, mode


def journal(run_id: str) -> str:
    return os.path.join(BACKUPS, run_id, "journal.json")


def save_journal(run_id: str, created: list[str]) -> None:
    os.makedirs(os.path.join(BACKUPS, run_id), exist_ok=True)
    with open(journal(run_id), "w") as fh:
        json.dump({"created": created}, fh)


def load_created(run_id: str) -> list[str]:
    try:
        with open(journal(run_id)) as fh:
            return json.load(fh)["created"]
    except FileNotFoundError:
        return []


def op_install(req: dict) -> dict:
    run_id, stage = req["run_id"], req["stage"]
    check_target(os.path.join(BACKUPS, run_id))  # a run id is one path component
    for f in req["files"]:
        check_target(f["path"])  # every target is checked before anything changes
    created = load_created(run_id)
    done = []
    for f in req["files"]:
        path = f["path"]
        with open(os.path.join(stage, "files", path.lstrip("/")), "rb") as fh:
            data = fh.read()
        backup(run_id, path, created)
        save_journal(run_id, created)
        if f.get("kind") == "block":
            merged, owner, group, mode = merged_block(path, data.decode(), f.get("position", "bottom"))
            write_atomic(path, merged, owner, group, mode)
        else:
            write_atomic(path, data, f["owner"], f["group"], f["mode"])
        done.append(path)
    return {"installed": done}


def unlink_target(path: str) -> bool:
    """Remove the last component of `path` (a link itself, never its target); False when absent."""
    fd = open_dir(posixpath.dirname(check_target(path)))
    if fd is None:
        return False
    try:
        if _final(fd, posixpath.basename(path), path) is None:
            return False
        os.unlink(posixpath.basename(path), dir_fd=fd)
        return True
    finally:
        os.close(fd)


def op_remove(req: dict) -> dict:
    run_id = req["run_id"]
    check_target(os.path.join(BACKUPS, run_id))
    for f in req["files"]:
        check_target(f["path"])
    created = load_created(run_id)
    done = []
    for f in req["files"]:
        path = f["path"]
        found = read_target(path) if f.get("kind") == "block" else None
        if f.get("kind") == "block" and found is None:
            continue
        backup(run_id, path, created)
        save_journal(run_id, created)
        if found is not None:
            before, _, after = split_block(found[0].decode("utf-8"))
            owner, group = owner_of(found[1])
            write_atomic(path, (before + after).encode(), owner, group, format(found[1].st_mode & 0o7777, "04o"))
        elif not unlink_target(path):
            continue
        done.append(path)
    return {"removed": done}


def op_restore(req: dict) -> dict:
    run_id = req["run_id"]
    root = os.path.join(BACKUPS, run_id, "files")
    check_target(os.path.join(BACKUPS, run_id))
    restored = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names + [d for d in _dirs if os.path.islink(os.path.join(dirpath, d))]:
            saved = os.path.join(dirpath, name)
            path = check_target("/" + os.path.relpath(saved, root))
            restored.append(path)
            if os.path.islink(saved):
                _restore_link(path, os.readlink(saved))
                continue
            st = os.lstat(saved)
            with open(saved, "rb") as fh:
                write_atomic(path, fh.read(), owner_of(st)[0], owner_of(st)[1], format(st.st_mode & 0o7777, "04o"))
    for path in load_created(run_id):
        if unlink_target(path):
            restored.append(path)
    return {"restored": sorted(restored)}


def _restore_link(path: str, value: str) -> None:
    """Put back a link the run replaced (e.g. /etc/resolv.conf on a systemd-resolved host)."""
    fd = open_dir(posixpath.dirname(path), create=True)
    assert fd is not None
    tmp = f".sty-{os.urandom(6).hex()}"
    try:
        os.symlink(value, tmp, dir_fd=fd)
        os.replace(tmp, posixpath.basename(path), src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)


def op_record(req: dict) -> dict:
    os.makedirs(STATE_DIR, exist_ok=True)
    write_atomic(RECORD, json.dumps(req["record"], indent=1, sort_keys=True).encode(), "root", "root", "0600")
    return {"recorded": RECORD}


OPERATIONS = {
    "inspect": op_inspect,
    "look": op_look,
    "ensure": op_ensure,
    "install": op_install,
    "remove": op_remove,
    "restore": op_restore,
    "record": op_record,
}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in OPERATIONS:
        print(json.dumps({"error": f"usage: agent.py {{{','.join(OPERATIONS)}}} < request.json"}))
        return 2
    try:
        result = OPERATIONS[sys.argv[1]](json.load(sys.stdin))
    except subprocess.CalledProcessError as exc:
        print(json.dumps({"error": f"{' '.join(exc.cmd)}: {(exc.stderr or exc.stdout or '').strip()}"}))
        return 1
    except (OSError, KeyError, ValueError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
