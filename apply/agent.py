"""The on-host half of `sty apply`: a standard-library-only script the control side runs on a host.

It is shipped with the staged bundle and invoked as `python3 agent.py OPERATION` with a JSON request on
stdin; it answers with JSON on stdout. Keeping every file-system decision in one script means one SSH
round trip per step and the same logic on every host, whatever its distribution.

Operations
  inspect   state of managed paths: exists, sha256, owner, group, mode (and content when asked)
  ensure    OS users and directories the manifest lists (idempotent)
  install   copy staged files into place atomically, backing up what they replace
  remove    delete files a bundle no longer contains, backing them up
  restore   put back everything a run changed, from its backups
  record    write the record of what was applied (/var/lib/sty/applied.json)
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

STATE_DIR = "/var/lib/sty"
RECORD = os.path.join(STATE_DIR, "applied.json")
BACKUPS = os.path.join(STATE_DIR, "backup")
BEGIN, END = "# BEGIN sty", "# END sty"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_block(text: str) -> tuple[str, str | None, str]:
    """(before, block or None, after) of the sty-managed block inside an OS-owned file."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(BEGIN)), None)
    if start is None:
        return text, None, ""
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(END)), len(lines) - 1)
    return "".join(lines[:start]), "".join(lines[start : end + 1]), "".join(lines[end + 1 :])


def live_content(path: str, kind: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
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


def op_inspect(req: dict) -> dict:
    out = {}
    for f in req["files"]:
        path, kind = f["path"], f.get("kind", "file")
        data = live_content(path, kind)
        if data is None:
            out[path] = {"exists": False}
            continue
        entry = {"exists": True, "sha256": sha256(data)}
        if kind == "file":
            st = os.stat(path)
            entry["owner"], entry["group"] = owner_of(st)
            entry["mode"] = format(st.st_mode & 0o7777, "04o")
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
        path = d["path"]
        if not os.path.isdir(path):
            os.makedirs(path, exist_ok=True)
            changed.append(f"directory {path}")
        st = os.stat(path)
        if owner_of(st) != (d["owner"], d["group"]):
            shutil.chown(path, d["owner"], d["group"])
            changed.append(f"owner of {path}")
        mode = int(d["mode"], 8)
        if st.st_mode & 0o7777 != mode:
            os.chmod(path, mode)
            changed.append(f"mode of {path}")
    return {"changed": changed}


def backup(run_id: str, path: str, created: list[str]) -> None:
    """Keep a copy of `path` before it changes; remember paths that did not exist."""
    target = os.path.join(BACKUPS, run_id, "files", path.lstrip("/"))
    if os.path.exists(target) or path in created:
        return
    if os.path.lexists(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(path, target)
        st = os.stat(path)
        os.chown(target, st.st_uid, st.st_gid)
    else:
        created.append(path)


def write_atomic(path: str, data: bytes, owner: str, group: str, mode: str) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sty-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        shutil.chown(tmp, owner, group)
        os.chmod(tmp, int(mode, 8))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def merged_block(path: str, block: str, position: str) -> tuple[bytes, str, str, str]:
    """The OS file with our block replaced (or added); keeps the file's owner and mode."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        st = os.stat(path)
        owner, group = owner_of(st)
        mode = format(st.st_mode & 0o7777, "04o")
    except FileNotFoundError:
        text, owner, group, mode = "", "root", "root", "0644"
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


def op_remove(req: dict) -> dict:
    run_id = req["run_id"]
    created = load_created(run_id)
    done = []
    for f in req["files"]:
        path = f["path"]
        if not os.path.lexists(path):
            continue
        backup(run_id, path, created)
        save_journal(run_id, created)
        if f.get("kind") == "block":
            with open(path, encoding="utf-8") as fh:
                before, _, after = split_block(fh.read())
            st = os.stat(path)
            owner, group = owner_of(st)
            write_atomic(path, (before + after).encode(), owner, group, format(st.st_mode & 0o7777, "04o"))
        else:
            os.unlink(path)
        done.append(path)
    return {"removed": done}


def op_restore(req: dict) -> dict:
    run_id = req["run_id"]
    root = os.path.join(BACKUPS, run_id, "files")
    restored = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            saved = os.path.join(dirpath, name)
            path = "/" + os.path.relpath(saved, root)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copy2(saved, path + ".sty-restore")
            st = os.stat(saved)
            os.chown(path + ".sty-restore", st.st_uid, st.st_gid)
            os.replace(path + ".sty-restore", path)
            restored.append(path)
    for path in load_created(run_id):
        if os.path.lexists(path):
            os.unlink(path)
            restored.append(path)
    return {"restored": sorted(restored)}


def op_record(req: dict) -> dict:
    os.makedirs(STATE_DIR, exist_ok=True)
    write_atomic(RECORD, json.dumps(req["record"], indent=1, sort_keys=True).encode(), "root", "root", "0600")
    return {"recorded": RECORD}


OPERATIONS = {
    "inspect": op_inspect,
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
