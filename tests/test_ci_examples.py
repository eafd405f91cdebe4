"""The CI examples (docs/ci/) and the pre-commit hooks (.pre-commit-hooks.yaml): what pre-commit requires of a
hook manifest, that every sty command line in them is a real subcommand with options sty accepts, and what the
hooks and the plan steps do when run for real against a copy of pigsty.yml (git, a fake GitLab API, node for
the github-script step when it is there)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT, SHIPPED, STY_BIN

from sty.cli import main

HOOKS = ROOT / ".pre-commit-hooks.yaml"
GITHUB = ROOT / "docs" / "ci" / "github-actions.yml"
GITLAB = ROOT / "docs" / "ci" / "gitlab-ci.yml"
# pre-commit's hook manifest (pre-commit.com, "Creating new hooks"): the four it requires, and the optional ones
REQUIRED = {"id", "name", "entry", "language"}
OPTIONAL = {
    "files",
    "exclude",
    "types",
    "types_or",
    "exclude_types",
    "always_run",
    "fail_fast",
    "verbose",
    "pass_filenames",
    "require_serial",
    "description",
    "language_version",
    "minimum_pre_commit_version",
    "args",
    "stages",
}
COMMAND_KEYS = {"entry", "run", "script", "before_script", "after_script"}  # where the files put command lines
STY_COMMAND = re.compile(r"(?<![\w./$-])sty\s+([a-z][a-z-]*)(.*)")
MARKER = "<!-- sty-plan -->"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def hooks() -> dict[str, dict[str, Any]]:
    return {h["id"]: h for h in load(HOOKS)}


def command_texts(node: Any, key: str = "") -> list[str]:
    """Every string under a key that holds commands (a list of them counts), anywhere in a YAML document."""
    if isinstance(node, dict):
        return [t for k, v in node.items() for t in command_texts(v, str(k))]
    if isinstance(node, list):
        return [t for item in node for t in command_texts(item, key)]
    return [node] if isinstance(node, str) and key in COMMAND_KEYS else []


def sty_commands(text: str) -> list[tuple[str, list[str]]]:
    """(subcommand, options) of every `sty ...` in a text; the command ends at a pipe, redirection, `;`, `)` or
    the end of the line."""
    found = []
    for line in text.splitlines():
        for m in STY_COMMAND.finditer(line):
            rest = re.split(r"\|\||&&|[|;>)]", m.group(2))[0]
            options = [t.strip("`'\"") for t in rest.split() if t.strip("`'\"").startswith("-")]
            found.append((m.group(1), options))
    return found


def step_of(step_name: str) -> dict[str, Any]:
    steps = load(GITHUB)["jobs"]["sty"]["steps"]
    return next(s for s in steps if s.get("name") == step_name)


def sty_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{STY_BIN.parent}{os.pathsep}{os.environ['PATH']}", **extra}


# -- the files as documents ----------------------------------------------------------------------------------------


def test_hook_manifest_has_what_pre_commit_requires():
    manifest = load(HOOKS)
    assert isinstance(manifest, list)
    assert [h["id"] for h in manifest] == ["sty-check", "sty-outputs-fresh"]
    for hook in manifest:
        assert REQUIRED <= set(hook), hook["id"]
        assert set(hook) <= REQUIRED | OPTIONAL, set(hook) - REQUIRED - OPTIONAL
        assert hook["language"] == "python"  # pre-commit pip-installs this repository for it
    fresh = hooks()["sty-outputs-fresh"]
    assert fresh["pass_filenames"] is False and fresh["always_run"] is True


@pytest.mark.parametrize(
    ("path", "inventory"),
    [
        ("pigsty.yml", True),
        ("fleets/prod/pigsty.yml", True),
        ("conf/testbed.yml", True),
        ("conf/prod.yaml", True),
        ("outputs/10.10.10.10.yml", False),
        ("facts/10.10.10.10.yml", False),
        ("secrets.yml", False),
        (".github/workflows/sty.yml", False),
        ("conf/nested/x.yml", False),
        ("mypigsty.yml", False),
    ],
)
def test_sty_check_runs_on_inventories_only(path, inventory):
    assert bool(re.search(hooks()["sty-check"]["files"], path)) is inventory


def test_workflows_post_one_plan_comment_per_pull_request():
    gh = load(GITHUB)
    on = gh.get("on", gh.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in on and gh["permissions"]["pull-requests"] == "write"
    post = step_of("Post the plan on the pull request")
    assert post["uses"].startswith("actions/github-script@")
    assert "head.repo.full_name == github.repository" in post["if"]  # a fork's token cannot comment
    assert "updateComment" in post["with"]["script"] and "createComment" in post["with"]["script"]
    gl = load(GITLAB)
    assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in gl["workflow"]["rules"]
    script = "\n".join(gl["sty"]["script"])
    assert "STY_GITLAB_TOKEN" in script and "merge_requests" in script
    assert "STY_GITLAB_TOKEN" in GITLAB.read_text().split("variables:")[0]  # the header says which token


def test_every_sty_command_line_is_a_real_subcommand_with_accepted_options():
    runner = CliRunner()
    seen: set[tuple[str, str]] = set()
    for path in (HOOKS, GITHUB, GITLAB):
        commands = [c for text in command_texts(load(path)) for c in sty_commands(text)]
        assert {"check", "diff"} <= {sub for sub, _ in commands}, path
        for sub, options in commands:
            assert sub in main.commands, f"{path.name}: sty {sub} is not a sty command"
            help_text = runner.invoke(main, [sub, "--help"]).output
            for option in options:
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text), f"sty {sub} {option}"
                seen.add((sub, option))
    assert {("check", "-i"), ("diff", "-i"), ("diff", "-o"), ("diff", "--stat")} <= seen


# -- the hooks and steps, run --------------------------------------------------------------------------------------


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """A copy of pigsty.yml with freshly built outputs/ (so that other work on the templates cannot make it stale)."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    shutil.copy(SHIPPED, fleet / "pigsty.yml")
    subprocess.run([str(STY_BIN), "build", "-q"], cwd=fleet, check=True, capture_output=True)
    return fleet


def run_entry(hook: str, files: list[str], cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(hooks()[hook]["entry"]) + files
    return subprocess.run(argv, cwd=cwd, env=sty_env(), capture_output=True, text=True)


@pytest.mark.slow
def test_sty_check_hook_fails_when_any_inventory_is_invalid(tmp_path):
    shutil.copy(SHIPPED, tmp_path / "pigsty.yml")
    assert run_entry("sty-check", ["pigsty.yml"], tmp_path).returncode == 0
    (tmp_path / "conf").mkdir()
    bad = yaml.safe_load(SHIPPED.read_text())
    bad["all"]["children"]["pg-test"]["hosts"]["10.10.10.12"]["pg_seq"] = 1  # two members with pg_seq 1
    (tmp_path / "conf" / "bad.yml").write_text(yaml.safe_dump(bad))
    r = run_entry("sty-check", ["conf/bad.yml", "pigsty.yml"], tmp_path)  # the valid one last
    assert r.returncode == 2, r.stderr
    assert "conf/bad.yml" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_outputs_fresh_hook_fails_when_the_inventory_changed(fleet_dir):
    assert run_entry("sty-outputs-fresh", [], fleet_dir).returncode == 0
    documented = ["-i", "pigsty.yml", "-o", "outputs"]  # the `args:` the manifest's header shows
    assert run_entry("sty-outputs-fresh", documented, fleet_dir).returncode == 0
    text = (fleet_dir / "pigsty.yml").read_text()
    (fleet_dir / "pigsty.yml").write_text(text.replace("pg_role: replica, pg_offline_query: true", "pg_role: replica"))
    r = run_entry("sty-outputs-fresh", [], fleet_dir)
    assert r.returncode == 1 and "10.10.10.13" in r.stdout


def git(cwd: Path, *args: str) -> None:
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pull_request(fleet_dir: Path, tmp_path: Path) -> Path:
    """A clone of a repository whose main branch holds pigsty.yml and its outputs/, with an uncommitted change of
    the inventory that touches pg-test only: a pull request's checkout."""
    git(fleet_dir, "init", "-q")
    git(fleet_dir, "add", "pigsty.yml", "outputs")
    git(fleet_dir, "commit", "-q", "-m", "base")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(fleet_dir), str(work))
    text = (work / "pigsty.yml").read_text()
    (work / "pigsty.yml").write_text(text.replace("pg_role: replica, pg_offline_query: true", "pg_role: replica"))
    return work


def assert_plan_of_pg_test(plan: str) -> None:
    assert "10.10.10.13" in plan and "10.10.10.10" not in plan  # only pg-test's hosts change


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_github_plan_step_diffs_the_pull_request_against_the_base_outputs(pull_request, tmp_path):
    temp = tmp_path / "runner"
    temp.mkdir()
    env = sty_env(**load(GITHUB)["env"], BASE_REF="main", RUNNER_TEMP=str(temp))
    script = step_of("Plan against the base branch")["run"]
    r = subprocess.run(["bash", "-e", "-c", script], cwd=pull_request, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert_plan_of_pg_test((temp / "plan.txt").read_text())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_gitlab_merge_request_script_plans_and_runs_without_a_token(pull_request):
    gl = load(GITLAB)
    script = next(s for s in gl["sty"]["script"] if "merge_request_event" in s)
    ci = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    env = {k: v for k, v in sty_env(**gl["variables"], **ci).items() if k != "STY_GITLAB_TOKEN"}
    argv = ["bash", "-e", "-o", "pipefail", "-c", script]  # as GitLab's runner runs a script
    r = subprocess.run(argv, cwd=pull_request, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "STY_GITLAB_TOKEN is not set" in r.stdout
    assert_plan_of_pg_test((pull_request / "plan.txt").read_text())


class FakeGitLab(BaseHTTPRequestHandler):
    """The three notes endpoints the GitLab job calls, over a list of notes, recording every request."""

    notes: list[dict[str, Any]] = []
    requests: list[tuple[str, str, str]] = []

    def _reply(self, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> dict[str, Any]:
        self.requests.append((self.command, self.path, self.headers.get("PRIVATE-TOKEN", "")))
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        page = int(re.search(r"[?&]page=(\d+)", self.path).group(1))
        self._reply(self.notes[(page - 1) * 100 : page * 100])

    def do_POST(self) -> None:  # noqa: N802
        note = {"id": len(self.notes) + 1, "body": self._record()["body"]}
        self.notes.append(note)
        self._reply(note)

    def do_PUT(self) -> None:  # noqa: N802
        data = self._record()
        note = next(n for n in self.notes if self.path.endswith(f"/notes/{n['id']}"))
        note["body"] = data["body"]
        self._reply(note)

    def log_message(self, *args: Any) -> None:
        pass


def test_gitlab_job_posts_one_note_and_edits_it(tmp_path):
    script = "\n".join(load(GITLAB)["sty"]["script"])
    program = script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    FakeGitLab.notes = [{"id": n, "body": f"a reviewer's note {n}"} for n in range(1, 121)]  # two pages
    FakeGitLab.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitLab)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "STY_GITLAB_TOKEN": "tok",
        "CI_API_V4_URL": f"http://127.0.0.1:{server.server_address[1]}/api/v4",
        "CI_PROJECT_ID": "7",
        "CI_MERGE_REQUEST_IID": "3",
    }
    try:
        for plan in ("first plan", "second plan"):
            (tmp_path / "plan.txt").write_text(plan + "\n")
            r = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    finally:
        server.shutdown()
    ours = [n for n in FakeGitLab.notes if n["body"].startswith(MARKER)]
    assert len(ours) == 1 and "second plan" in ours[0]["body"] and "```" in ours[0]["body"]
    writes = [(m, p) for m, p, _ in FakeGitLab.requests if m != "GET"]
    notes = "/api/v4/projects/7/merge_requests/3/notes"
    assert writes == [("POST", notes), ("PUT", f"{notes}/121")]  # found on the second page of notes
    assert {token for _, _, token in FakeGitLab.requests} == {"tok"}
    del env["STY_GITLAB_TOKEN"]
    r = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "STY_GITLAB_TOKEN is not set" in r.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_github_script_creates_then_updates_its_own_comment(tmp_path):
    script = step_of("Post the plan on the pull request")["with"]["script"]
    (tmp_path / "plan.txt").write_text("the plan\n")
    harness = f"""
const calls = [];
const comments = JSON.parse(process.env.COMMENTS);
const github = {{
  paginate: async (fn, args) => {{ calls.push(['list', args.issue_number]); return comments; }},
  rest: {{ issues: {{
    listComments: 'listComments',
    updateComment: async (a) => calls.push(['update', a.comment_id, a.body]),
    createComment: async (a) => calls.push(['create', a.issue_number, a.body]),
  }} }},
}};
const context = {{ repo: {{ owner: 'o', repo: 'r' }}, issue: {{ number: 5 }} }};
(async () => {{
{script}
}})().then(() => console.log(JSON.stringify(calls)));
"""
    (tmp_path / "harness.js").write_text(harness)

    def run(comments: list[dict[str, Any]]) -> list[list[Any]]:
        env = {**os.environ, "PLAN": str(tmp_path / "plan.txt"), "COMMENTS": json.dumps(comments)}
        r = subprocess.run(["node", "harness.js"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    first = run([{"id": 1, "user": {"type": "User"}, "body": f"{MARKER} quoted by a person"}])
    assert first[0] == ["list", 5] and first[1][:2] == ["create", 5] and first[1][2].startswith(MARKER)
    assert "the plan" in first[1][2]
    person, bot = {"type": "User"}, {"type": "Bot"}
    again = run([{"id": 1, "user": person, "body": MARKER}, {"id": 9, "user": bot, "body": f"{MARKER} old plan"}])
    assert again[1][:2] == ["update", 9]
