"""A published MCP server, started the way its users start it: ``mcp-server-git`` (pip) as
``python -m mcp_server_git --repository PATH``, through `MCPServers`, the agent and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ironloop.graph import build_agent
from ironloop.tools.idempotency import KeyStatus, MemoryIdempotencyStore
from ironloop.tools.mcp import MCPServers
from langchain_core.messages import AIMessage

from tests.helpers import call, observations, record, replay_model, turn
from tests.openai_server import OpenAIStub


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "tests@ironloop.invalid")
    git(path, "config", "user.name", "ironloop tests")
    (path / "a.txt").write_text("a\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "first")
    (path / "b.txt").write_text("b\n")
    return path


def git_server(repo: Path, **settings: object) -> dict:
    entry = {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)], **settings}
    return {"mcpServers": {"git": entry}}


async def test_reads_and_writes_through_the_agent_exactly_once(repo: Path) -> None:
    where = str(repo)
    status, add = call("git_status", repo_path=where), call("git_add", repo_path=where, files=["b.txt"])
    commit, log = call("git_commit", repo_path=where, message="add b"), call("git_log", repo_path=where, max_count=5)
    store = MemoryIdempotencyStore()
    async with MCPServers.from_config(git_server(repo, trust=True)) as mcp:
        policies = mcp.policies
        assert not policies["git_status"].side_effect and policies["git_commit"].side_effect
        assert policies["git_add"].honours_idempotency_key and not policies["git_commit"].honours_idempotency_key
        model = replay_model(turn(status), turn(add), turn(commit), turn(log))
        agent = build_agent(model, mcp.tools, policies=policies, idempotency_store=store)
        config = {"configurable": {"thread_id": "git-1"}}
        result = await agent.ainvoke({"messages": [("user", "commit b.txt")]}, config)
        seen = observations(result["messages"])
        assert "b.txt" in seen[status["id"]].text  # untracked before the add
        assert "add b" in seen[log["id"]].text
        assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
        assert git(repo, "log", "-1", "--format=%s").strip() == "add b"
        key = record(seen[commit["id"]])["idempotency_key"]
        assert store.get(key).status is KeyStatus.COMPLETED

        # The same logical call again (a replayed turn, a resumed thread): answered from the ledger, not run.
        again = build_agent(replay_model(turn(commit)), mcp.tools, policies=policies, idempotency_store=store)
        replay = await again.ainvoke({"messages": [("user", "commit b.txt")]}, config)
        replayed = observations(replay["messages"])[commit["id"]]
        assert record(replayed)["attempts"][0]["replayed"] is True
        assert git(repo, "rev-list", "--count", "HEAD").strip() == "2", "no second commit"
        assert mcp.connections["git"].starts == 1


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IRONLOOP_"))}
    return subprocess.run(
        [sys.executable, "-m", "ironloop", *args], capture_output=True, text=True, timeout=120, env=clean, cwd=cwd
    )


def test_cli_lists_each_tool_with_its_policy_and_why(repo: Path, tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(git_server(repo, trust=True)))
    result = _cli("mcp", "list", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("git  (") and "trusted; mcp-git" in lines[0]
    commit = next(i for i, line in enumerate(lines) if line.strip().startswith("git_commit "))
    assert "side effect, exactly once, never repeated blindly after an unknown outcome" in lines[commit]
    assert lines[commit + 1].strip().startswith("why: not read-only")
    as_json = json.loads(_cli("mcp", "list", "--config", str(config), "--json").stdout)
    tools = {t["name"]: t for t in as_json["git"]["tools"]}
    assert tools["git_log"]["side_effect"] is False and tools["git_add"]["honours_idempotency_key"] is True
    assert tools["git_reset"]["annotations"]["destructiveHint"] is True

    config.write_text(json.dumps(git_server(repo)))  # not trusted: annotations ignored
    untrusted = json.loads(_cli("mcp", "list", "--config", str(config), "--json").stdout)
    assert all(t["side_effect"] and t["untrusted_output"] for t in untrusted["git"]["tools"])


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (None, 2, "cannot read the MCP config file"),
        ("{not json", 2, "is not valid JSON"),
        ('{"mcpServers": {"x": {"command": "python3", "bogus": 1}}}', 2, "unknown key(s) bogus"),
        ('{"mcpServers": {"x": {"command": "python3", "args": ["-c", "pass"]}}}', 1, "could not be started"),
    ],
)
def test_cli_config_problems_are_one_line(tmp_path: Path, content: str | None, code: int, message: str) -> None:
    config = tmp_path / "mcp.json"
    if content is not None:
        config.write_text(content)
    result = _cli("mcp", "list", "--config", str(config))
    assert result.returncode == code
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


@pytest.mark.parametrize("via", ["flag", "ironloop.toml"])
def test_cli_run_gives_the_agent_the_servers_tools(repo: Path, tmp_path: Path, via: str) -> None:
    config = tmp_path / "servers" / "mcp.json"
    config.parent.mkdir()
    config.write_text(json.dumps(git_server(repo, trust=True)))
    work = tmp_path / "work"
    work.mkdir()
    flags = ["--mcp-config", str(config)] if via == "flag" else []
    if via == "ironloop.toml":
        (work / "ironloop.toml").write_text('[mcp]\nconfig = "../servers/mcp.json"\n')
    status = {"name": "git_status", "args": {"repo_path": str(repo)}, "id": "call_git_status"}
    with OpenAIStub() as stub:
        stub.queue += [AIMessage("", tool_calls=[status]), AIMessage("b.txt is untracked.")]
        result = _cli(
            "run", "What is untracked?", "--model", "m", "--base-url", stub.base_url, "--api-key", "k",
            "--db", f"sqlite:///{tmp_path / 'ironloop.db'}", *flags, cwd=work,
        )  # fmt: skip
        offered = {t["function"]["name"] for t in stub.requests[0]["tools"]}
        sent_back = stub.tool_results(1)
    assert result.returncode == 0, result.stderr
    assert {"git_status", "git_commit", "search"} <= offered
    assert [part["type"] for part in sent_back["call_git_status"]] == ["text"]  # content blocks, on the wire
    assert "b.txt" in sent_back["call_git_status"][0]["text"]
    assert "git_status(repo_path=" in result.stdout and result.stdout.strip().endswith("b.txt is untracked.")
