"""The documentation holds: every relative link in README.md and docs/*.md leads somewhere, and the README's
quickstart runs as printed (offline: its ``ChatOpenAI`` talks to a scripted OpenAI-compatible server)."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from tests.openai_server import OpenAIStub

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(page: Path) -> str:
    """The page without its code blocks (a link-like string in code is not a link)."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    slugs = set()
    for line in prose(page).splitlines():
        if heading := re.match(r"#+\s+(.*)", line):
            text = heading.group(1).strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return slugs


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not broken, f"{page.name}: {broken}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    assert [p.name for p in PAGES[1:] if p not in linked] == []


def quickstart() -> str:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "the quickstart has one Python block"
    return str(blocks[0])


def weather_script(messages: Sequence[BaseMessage]) -> AIMessage:
    """Ask for the weather in Paris, then answer with what the tool said."""
    observations = [m for m in messages if isinstance(m, ToolMessage)]
    if not observations:
        return AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call_weather"}])
    return AIMessage(f"In Paris today: {observations[-1].content}")


def test_the_quickstart_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with OpenAIStub(weather_script) as stub:
        monkeypatch.setenv("OPENAI_API_KEY", "quickstart")
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        namespace: dict[str, object] = {"__name__": "__main__"}
        exec(compile(quickstart(), "README.md quickstart", "exec"), namespace)

    answer, attempts = capsys.readouterr().out.splitlines()[-2:]
    assert answer == "In Paris today: Paris: 18 °C, light rain"
    assert namespace["calls"] == 2, "the first try failed and was retried"
    assert "'outcome': 'transient_error'" in attempts and "'outcome': 'ok'" in attempts
    assert list(stub.tool_results().values()) == ["Paris: 18 °C, light rain"], "the model never saw the 503"
    assert (tmp_path / "quickstart.db").exists()


def test_the_policy_page_names_every_option_and_only_those() -> None:
    """docs/policies.md's table lists exactly the fields of `ToolPolicy`, and its signature every argument of
    `build_agent` (a field added, renamed or removed shows here)."""
    import dataclasses
    import inspect

    from ironloop import ToolPolicy, build_agent

    page = (ROOT / "docs" / "policies.md").read_text(encoding="utf-8")
    table = page.split("## `ToolPolicy`", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
    assert rows == [f.name for f in dataclasses.fields(ToolPolicy)]
    signature = page.split("## `build_agent`", 1)[1].split("```", 2)[1]
    assert [p for p in inspect.signature(build_agent).parameters if p not in signature] == []


CHECKED_CALLS = ("build_agent", "ToolPolicy", "ModelPolicy", "TaskBudget", "RateLimit", "CircuitBreaker")


def python_blocks(page: Path) -> list[str]:
    return [str(b) for b in re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_sample_parses_and_names_what_exists(page: Path) -> None:
    """Samples that need a model or a service cannot all run here; each still parses, imports names that exist,
    and passes only keyword arguments the policies and `build_agent` take (a renamed option shows here)."""
    import importlib
    import inspect

    import ironloop

    for block in python_blocks(page):
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                missing = [a.name for a in node.names if not hasattr(module, a.name)]
                assert not missing, f"{page.name}: {node.module} has no {missing}"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CHECKED_CALLS:
                accepted = inspect.signature(getattr(ironloop, node.func.id)).parameters
                unknown = [k.arg for k in node.keywords if k.arg is not None and k.arg not in accepted]
                assert not unknown, f"{page.name}: {node.func.id}() takes no {unknown}"
