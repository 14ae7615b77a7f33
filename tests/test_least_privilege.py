"""Least privilege for tool credentials (issue 7): a planted secret reaches the one tool granted it, and nothing else.

Issue 12 (item 9) adds secrets with control characters (a trailing newline is trimmed, one inside is refused in one
line) and with characters that escape differently in ``repr``, bytes literals, JSON, URLs and HTML, echoed by the
service in each of those forms: no escaped copy may leak either, and the search looks for the secret's random core.

The flows are real: an agent with a SQL checkpointer and the attempt ledger, tools calling an HTTP payments service
that checks the bearer key (and, in the failure flow, echoes the ``Authorization`` header into its 401/500 bodies).
Afterwards every place a secret could land is searched: the model's inputs and the tool schemas bound to it, every
row of every table of the database (and the SQLite file's raw bytes), captured logs at DEBUG for all loggers, the
trajectory printer, stdout/stderr (also of the ``ironloop`` CLI in a subprocess), and the reprs of errors. Each test
also checks that the key WAS received where it belongs, so it cannot pass by never sending it.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import logging
import os
import pickle
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import pytest
from ironloop.benchmarks.otlp_receiver import OTLPReceiver, otlp_telemetry
from ironloop.checkpoints import SQLAlchemySaver
from ironloop.checkpoints.ledger import AttemptLedger
from ironloop.cli.trajectory import TrajectoryPrinter
from ironloop.demo.scripted_model import Replay, ScriptedChatModel
from ironloop.demo.services.server import ServiceThread
from ironloop.graph.agent import build_agent
from ironloop.graph.tool_node import PolicyToolNode
from ironloop.tools.builtin import CHARGE_POLICY, make_charge_tool
from ironloop.tools.credentials import (
    Credentials,
    CredentialsConfigError,
    MissingCredentialError,
    Secret,
    check_grants,
    env_var,
)
from ironloop.tools.errors import PermanentToolError
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.redaction import scrub_exception
from ironloop.tools.schemas import openai_tool_specs
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import InjectedToolArg, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict
from sqlalchemy import inspect, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.helpers import call, observations, turn

FAST = {"backoff_initial_s": 0.001, "backoff_max_s": 0.002, "jitter": 0.0}


def planted() -> str:
    return f"sk-planted-{uuid.uuid4().hex}"


ESCAPING = "+/='\"\\&<>"
"""Characters that ``repr``, bytes literals, JSON, percent-encoding and HTML each escape differently."""


def forms_of(secret: str) -> list[bytes]:
    """The secret as it could appear in stored bytes: raw, escaped (JSON, ``repr``, a bytes literal, percent-encoded),
    hex, base64 at each alignment, and its random core alone (the part that must never be seen, however the rest
    was escaped)."""
    raw = secret.encode()
    core = max(re.findall(r"[0-9a-f]{32}", secret), key=len).encode()
    forms = [raw, core, json.dumps(secret).encode()[1:-1], raw.hex().encode()]
    forms += [repr(secret)[1:-1].encode(), repr(raw)[2:-1].encode(), quote(secret, safe="").encode()]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        forms.append(encoded[4 if pad else 0 : -4])  # the part that does not depend on the neighbours
        encoded = base64.urlsafe_b64encode(b"\0" * pad + raw)
        forms.append(encoded[4 if pad else 0 : -4])
    return forms


def assert_absent(secret: str, where: str, blob: bytes | str) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for form in forms_of(secret):
        assert form not in data, f"the planted secret (as {form[:12]!r}...) is in {where}"


# -- a payments service that checks the key, and can echo it back --------------------------------------------------


class EchoingPayments:
    """``POST /charges`` requiring ``Bearer <key>``; ``mode`` "ok" charges, "401"/"500" fail quoting the header,
    and "repr", "bytes", "json", "percent", "html" fail quoting it in that escaped form, in a text body."""

    def __init__(self, key: str):
        self.key = key
        self.mode = "ok"
        self.received: list[str] = []
        self.service = ServiceThread(Starlette(routes=[Route("/charges", self.charge, methods=["POST"])]))

    async def charge(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        self.received.append(auth)
        body = await request.json()
        if self.mode == "401" or auth != f"Bearer {self.key}":
            return JSONResponse({"error": f"bad credentials: {auth}"}, status_code=401)
        if self.mode == "500":
            return PlainTextResponse(f"Traceback ... KeyError: headers={{'authorization': '{auth}'}}", 500)
        escaped = {
            "repr": lambda: f"KeyError: headers={ {'authorization': auth}!r}",
            "bytes": lambda: f"LocalProtocolError: Illegal header value {auth.encode()!r}",
            "json": lambda: f'upstream answered {{"authorization": {json.dumps(auth)}}} (truncated',
            "percent": lambda: f"retry GET /charges?auth={quote(auth, safe='')} later",
        }
        if self.mode in escaped:
            return PlainTextResponse(escaped[self.mode](), 400)
        if self.mode == "html":
            return HTMLResponse(f"<html><p>Bad header {html.escape(auth)}</p>", 400)
        return JSONResponse({"id": "ch_1", **body, "status": "succeeded", "debug": auth})


@pytest.fixture
def secret() -> str:
    return planted()


@pytest.fixture
def payments(secret: str) -> Iterator[EchoingPayments]:
    service = EchoingPayments(secret)
    service.service.start()
    yield service
    service.service.stop()


# -- tools that try to leak -------------------------------------------------------------------------------------------

LEAKY_POLICY = ToolPolicy(max_attempts=1, credentials=("token",))


def make_leaky(seen: list[str]) -> StructuredTool:
    """Returns or raises its token: what a careless tool does. The runner must scrub both."""

    async def leaky(mode: str, token: Annotated[Secret, InjectedToolArg]) -> str:
        """Report the token (mode "return") or fail with it (mode "raise")."""
        seen.append(token.reveal())
        if mode == "raise":
            raise PermanentToolError(f"upstream refused token {token.reveal()}") from ValueError(token.reveal())
        return f"token is {token.reveal()}"

    return StructuredTool.from_function(coroutine=leaky, name="leaky")


class RecordingScript:
    """The model: a replay of turns, recording every message it was given (its whole context)."""

    def __init__(self, *turns: AIMessage):
        self.replay = Replay([*turns, AIMessage(content="done")])
        self.seen: list[BaseMessage] = []

    def __call__(self, messages: Sequence[BaseMessage]) -> AIMessage:
        self.seen.extend(messages)
        return self.replay(messages)

    def context_text(self) -> str:
        return "\n".join(repr(m) + json.dumps(m.model_dump(), default=repr) for m in self.seen)


def dump_database(engine: Any) -> bytes:
    """Every row of every table, as text and raw bytes."""
    chunks: list[bytes] = []
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        chunks.append(bytes(value))
                    chunks.append(repr(value).encode())
    assert chunks, "the database is empty: nothing was checked"
    return b"\n".join(chunks)


def run_flow(
    db_url: str,
    script: RecordingScript,
    tools: list[Any],
    policies: dict[str, ToolPolicy],
    printed: io.StringIO,
) -> tuple[list[BaseMessage], bytes, bytes]:
    """Run the agent to the end on ``db_url``, traced over OTLP to a local receiver; its messages, the database
    dump and the raw OpenTelemetry export. The trajectory is printed to ``printed``, followed by every item of
    LangGraph's ``tools`` stream (what callbacks and tracing see)."""
    with (
        SQLAlchemySaver.from_url(db_url) as saver,
        OTLPReceiver() as receiver,
        otlp_telemetry(receiver) as (telemetry, flush),
    ):
        saver.setup()
        ledger = AttemptLedger(saver.engine)
        try:
            agent = build_agent(
                ScriptedChatModel(script=script),
                tools,
                policies=policies,
                checkpointer=saver,
                listeners=[ledger],
                telemetry=telemetry,
            )
            config = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}
            printer = TrajectoryPrinter(out=printed)
            tool_events: list[str] = []
            for mode, chunk in agent.stream(
                {"messages": [("user", "charge and report")]},
                config,
                stream_mode=["updates", "custom", "tools"],
                durability="sync",
            ):
                if mode == "tools":
                    tool_events.append(repr(chunk))
                else:
                    printer.feed(mode, chunk)
            printer.finish()
            assert tool_events, "the tools stream was empty: checking it would be vacuous"
            printed.write("\n".join(tool_events))
            messages = agent.get_state(config).values["messages"]
        finally:
            ledger.close()
        flush()
        assert any(span.name == "execute_tool charge_card" for span in receiver.received.spans), "nothing traced"
        return messages, dump_database(saver.engine), b"".join(receiver.received.raw)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'secrets.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def granted_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str) -> str:
    """The charge key in the environment, the leaky tool's token in a config file (both sources in use)."""
    token = planted()
    config = tmp_path / "ironloop.toml"
    config.write_text(f'[tools.leaky.credentials]\ntoken = "{token}"\n')
    monkeypatch.setenv("IRONLOOP_TOOL_CHARGE_CARD_API_KEY", secret)
    monkeypatch.setenv("IRONLOOP_CONFIG", str(config))
    return token


def check_everywhere(
    secrets: Sequence[str],
    script: RecordingScript,
    messages: list[BaseMessage],
    dump: bytes,
    printed: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    exported: bytes,
) -> None:
    captured = capsys.readouterr()
    logs = "\n".join(r.getMessage() + repr(r.args) + (repr(r.exc_info) if r.exc_info else "") for r in caplog.records)
    assert caplog.records, "no log records captured: the log check would be vacuous"
    places: dict[str, bytes | str] = {
        "the model's context": script.context_text(),
        "the final messages": "\n".join(repr(m) for m in messages),
        "the database (every table, every row)": dump,
        "the logs (DEBUG, all loggers)": logs + caplog.text,
        "the trajectory printer and the tools stream (callbacks)": printed,
        "stdout": captured.out,
        "stderr": captured.err,
        "the OpenTelemetry export (every span, attribute and metric, raw protobuf)": exported,
    }
    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for file in [path, *path.parent.glob(path.name + "-*")]:
            places[f"the raw file {file.name}"] = file.read_bytes()
    for secret in secrets:
        for where, blob in places.items():
            assert_absent(secret, where, blob)


def test_a_granted_key_authenticates_and_is_found_nowhere(
    db_url: str,
    payments: EchoingPayments,
    granted_env: str,
    secret: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    token = granted_env
    leaked_to_tool: list[str] = []
    charge, ret, boom = (
        call("charge_card", customer_id="cus_ada", amount_cents=1250),
        call("leaky", mode="return"),
        call("leaky", mode="raise"),
    )
    script = RecordingScript(turn(charge, ret, boom))
    printed = io.StringIO()
    messages, dump, exported = run_flow(
        db_url,
        script,
        [make_charge_tool(payments.service.url), make_leaky(leaked_to_tool)],
        {"charge_card": CHARGE_POLICY.but(**FAST), "leaky": LEAKY_POLICY},
        printed,
    )
    seen = observations(messages)
    # The keys were really used: the service got the bearer key, the tool got its token.
    assert payments.received == [f"Bearer {secret}"]
    assert leaked_to_tool == [token, token]
    assert seen[charge["id"]].content == "Charged cus_ada 1250 cents: charge ch_1 succeeded."
    assert seen[ret["id"]].content == "token is ***"
    assert seen[boom["id"]].status == "error" and "upstream refused token ***" in seen[boom["id"]].content
    assert "***" in printed.getvalue()
    check_everywhere([secret, token], script, messages, dump, printed.getvalue(), caplog, capsys, db_url, exported)


@pytest.mark.parametrize(
    ("mode", "escaping"),
    [("401", False), ("500", False)] + [(m, True) for m in ("401", "500", "repr", "bytes", "json", "percent", "html")],
)
def test_a_service_echoing_the_key_in_errors_is_redacted(
    mode: str,
    escaping: bool,
    tmp_path: Path,
    payments: EchoingPayments,
    granted_env: str,
    secret: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    if escaping:  # a key with characters every escaping changes: each escaped echo must be redacted too
        secret = payments.key = secret + ESCAPING
        monkeypatch.setenv("IRONLOOP_TOOL_CHARGE_CARD_API_KEY", secret)
    payments.mode = mode
    charge = call("charge_card", customer_id="cus_bob", amount_cents=725)
    script = RecordingScript(turn(charge))
    printed = io.StringIO()
    db_url = f"sqlite:///{tmp_path / 'errors.db'}"
    messages, dump, exported = run_flow(
        db_url,
        script,
        [make_charge_tool(payments.service.url)],
        {"charge_card": CHARGE_POLICY.but(max_attempts=2, **FAST)},
        printed,
    )
    observation = observations(messages)[charge["id"]]
    assert payments.received and set(payments.received) == {f"Bearer {secret}"}
    assert observation.status == "error"
    echo = re.compile(r"Bearer(?: |%20|\+)\*\*\*")
    assert echo.search(observation.content), observation.content  # the echo arrived, scrubbed
    assert echo.search(dump.decode(errors="replace"))  # the ledger has the (scrubbed) error text
    check_everywhere([secret], script, messages, dump, printed.getvalue(), caplog, capsys, db_url, exported)


def test_the_model_never_sees_the_parameter_and_cannot_forge_it(payments: EchoingPayments, secret: str) -> None:
    got: list[Secret | None] = []

    async def snoop(query: str, api_key: Annotated[Secret | None, InjectedToolArg] = None) -> str:
        """Look something up."""
        got.append(api_key)
        return "nothing"

    tools = [make_charge_tool(payments.service.url), StructuredTool.from_function(coroutine=snoop, name="snoop")]
    specs = json.dumps([convert_to_openai_tool(t) for t in tools]) + json.dumps(openai_tool_specs(tools))
    assert "api_key" not in specs and "customer_id" in specs

    forged = {"name": "snoop", "args": {"query": "x", "api_key": "forged"}, "id": "call_forged"}
    plain = call("snoop", query="y")
    forged_charge = call("charge_card", customer_id="cus_1", amount_cents=100, api_key="forged-by-the-model")
    charge = call("charge_card", customer_id="cus_2", amount_cents=200)
    agent = build_agent(
        ScriptedChatModel(script=Replay([turn(forged, plain, forged_charge, charge), AIMessage(content="done")])),
        tools,
        policies={"charge_card": CHARGE_POLICY.but(**FAST)},
        credentials=Credentials({"charge_card": {"api_key": secret}}),
    )
    seen = observations(agent.invoke({"messages": [("user", "go")]})["messages"])
    for refused in (forged, forged_charge):  # refused before dispatch: the model may not write an injected parameter
        assert "unexpected argument 'api_key'" in seen[refused["id"]].content
    assert got == [None]  # the plain call ran, and was given nothing
    assert seen[charge["id"]].content.startswith("Charged cus_2 200 cents")
    assert payments.received == [f"Bearer {secret}"]  # only the real charge was sent, with the configured key

    # Behind that check, the tools node itself drops a model-written value for an injected parameter.
    node = PolicyToolNode(tools)
    stripped = node._inject_tool_args({**forged, "type": "tool_call"}, None, tools[1])  # type: ignore[arg-type]
    assert stripped["args"] == {"query": "x"}


def test_a_tool_not_granted_the_credential_gets_nothing(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("IRONLOOP_TOOL_CHARGE_CARD_API_KEY", secret)
    got: dict[str, Any] = {}

    async def snoop(api_key: Annotated[Secret | None, InjectedToolArg] = None) -> str:
        """No grant: must receive nothing."""
        got["snoop"] = api_key
        return "ok"

    async def thief(api_key: Annotated[Secret, InjectedToolArg]) -> str:
        """Granted "api_key", but under its own name: must not receive charge_card's."""
        got["thief"] = api_key
        return "ok"

    async def environ_reader() -> str:
        """Reads the process environment: the CLI removes the variables once read (see the CLI test)."""
        return "ok"

    tools = [StructuredTool.from_function(coroutine=f, name=f.__name__) for f in (snoop, thief, environ_reader)]
    s, t = call("snoop"), call("thief")
    agent = build_agent(
        ScriptedChatModel(script=Replay([turn(s, t), AIMessage(content="done")])),
        tools,
        policies={"thief": ToolPolicy(max_attempts=1, credentials=("api_key",))},
    )
    seen = observations(agent.invoke({"messages": [("user", "go")]})["messages"])
    assert got == {"snoop": None}
    assert seen[t["id"]].status == "error"
    assert "IRONLOOP_TOOL_THIEF_API_KEY" in seen[t["id"]].content and secret not in seen[t["id"]].content


def run_cli_demo(db: Path, key: str, *, logs: bool = True) -> subprocess.CompletedProcess[bytes]:
    """``ironloop demo`` charging two customers, ``key`` as the charge key (and DEBUG logs on stderr if ``logs``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONLOOP_")}
    env.update({"IRONLOOP_TOOL_CHARGE_CARD_API_KEY": key, "PYTHONPATH": str(Path(__file__).parent.parent)})
    program = (
        f"import logging, os, sys; logging.basicConfig(level={logging.DEBUG if logs else logging.CRITICAL}); "
        "from ironloop.cli.app import main; "
        "code = main(sys.argv[1:]); "
        "print('child env has key:', any(k.startswith('IRONLOOP_TOOL_') for k in os.environ)); sys.exit(code)"
    )
    question = "Charge cus_ada $12.50 and cus_bob $7.25."
    return subprocess.run(
        [sys.executable, "-c", program, "demo", "--db", f"sqlite:///{db}", "--question", question],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_the_cli_demo_charges_with_the_key_and_prints_it_nowhere(tmp_path: Path, secret: str) -> None:
    db = tmp_path / "cli.db"
    done = run_cli_demo(db, secret)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = done.stdout.decode()
    # The bundled service required the configured key: the charges going through proves it was sent.
    assert "answer: Charged cus_ada $12.50" in out and "cus_bob $7.25" in out, out
    assert "child env has key: False" in out  # read once, then removed: child processes do not inherit it
    assert done.stderr, "DEBUG logging produced nothing: the stderr check would be vacuous"
    for where, blob in {"CLI stdout": done.stdout, "CLI stderr (DEBUG logs)": done.stderr}.items():
        assert_absent(secret, where, blob)
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{db}")
    try:
        assert_absent(secret, "the CLI's database", dump_database(engine))
    finally:
        engine.dispose()
    assert_absent(secret, "the CLI's database file", db.read_bytes())


@pytest.mark.parametrize("padding", [("", "\n"), ("", "\r\n"), (" \t", "\n\n")])
def test_a_key_with_a_trailing_line_break_is_trimmed_and_leaks_nowhere(
    tmp_path: Path, secret: str, padding: tuple[str, str]
) -> None:
    """``IRONLOOP_TOOL_CHARGE_CARD_API_KEY=$'sk-...\\n'``: sent as is, the HTTP client refused the header with an
    error quoting it escaped (``b'Bearer sk-...\\n'``), which reached the answer, the trajectory and the database."""
    db = tmp_path / "trailing.db"
    done = run_cli_demo(db, padding[0] + secret + padding[1])
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = done.stdout.decode()
    assert "answer: Charged cus_ada $12.50" in out and "cus_bob $7.25" in out, out  # the trimmed key was accepted
    for where, blob in {"CLI stdout": done.stdout, "CLI stderr (DEBUG logs)": done.stderr}.items():
        assert_absent(secret, where, blob)
    assert_absent(secret, "the CLI's database file", db.read_bytes())


@pytest.mark.parametrize("inside", ["\n", "\r\nX-Injected: 1", "\t", "\x1b[2K", "\x85"])
def test_a_key_with_a_control_character_inside_is_refused_in_one_line(tmp_path: Path, secret: str, inside: str) -> None:
    value = secret[:20] + inside + secret[20:]
    db = tmp_path / "refused.db"
    done = run_cli_demo(db, value, logs=False)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.startswith("ironloop: error: $IRONLOOP_TOOL_CHARGE_CARD_API_KEY contains a control character"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert secret[:20] not in err and secret[20:] not in err
    assert not db.exists()  # refused before anything ran


@pytest.mark.parametrize("escape", ["\\u001b", "\\u0000", "\\n"])
def test_a_config_file_key_with_a_control_character_is_refused(tmp_path: Path, escape: str) -> None:
    value = planted()
    config = tmp_path / "ironloop.toml"
    config.write_text(f'[tools.charge_card.credentials]\napi_key = "{value[:20]}{escape}{value[20:]}"\n')
    with pytest.raises(CredentialsConfigError, match="api_key contains a control character") as raised:
        Credentials.load(config, environ={})
    assert value[:20] not in str(raised.value) and value[20:] not in str(raised.value)
    config.write_text(f'[tools.charge_card.credentials]\napi_key = "  {value}\\n"\n')
    assert Credentials.load(config, environ={}).get("charge_card", "api_key") == Secret(value)  # trimmed


def test_the_cli_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[tools.charge_card.credentials]\napi_key = "sk-unterminated\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONLOOP_")}
    env.update({"IRONLOOP_CONFIG": str(config), "PYTHONPATH": str(Path(__file__).parent.parent)})
    done = subprocess.run(
        [sys.executable, "-m", "ironloop", "demo", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode().startswith(f"ironloop: error: {config} is not valid TOML")
    assert "Traceback" not in done.stderr.decode() and "sk-unterminated" not in done.stderr.decode()


# -- the pieces --------------------------------------------------------------------------------------------------------


def test_the_search_finds_every_form_of_the_secret() -> None:
    value = planted() + ESCAPING
    blobs = [value, json.dumps({"k": value}), base64.b64encode(b"xy:" + value.encode()), value.encode().hex()]
    blobs += [repr({"k": value}), repr(value.encode()), quote(value), html.escape(value), value[:-3]]
    for blob in blobs:
        with pytest.raises(AssertionError):
            assert_absent(value, "a blob", blob)


@pytest.mark.parametrize("tail", ["", ESCAPING, "\n", "é😀\x1b"])
def test_redaction_covers_every_escaped_form(tail: str) -> None:
    value = planted() + tail
    secret = Secret(value)
    texts = [
        f"raw {value} end",
        f"repr {value!r} and {[value]!r} and {value.encode()!r} and {[value.encode()]!r} end",
        f"json {json.dumps(value)} {json.dumps(value, ensure_ascii=False)} end",
        f"url ?a={quote(value, safe='')}&b=/{quote(value)} end",
        f"html {html.escape(value)} end",
    ]
    for shown in texts:
        cleaned = secret.redact(shown)
        assert "***" in cleaned and cleaned.endswith(" end"), cleaned
        assert_absent(value, f"the redacted {shown[:4]} text", cleaned)
        assert Credentials({"t": {"k": secret}}).redact(shown) == cleaned


def test_a_secret_does_not_show_or_serialise() -> None:
    value = planted()
    s = Secret(value)
    assert repr(s) == str(s) == f"{s}" == f"{s!r:>5}" == "Secret('***')"
    assert value not in repr({"k": s}) and value not in repr([s])
    for dump in (pickle.dumps, json.dumps):
        with pytest.raises(TypeError):
            dump(s)

    class Model(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        key: Secret

    model = Model(key=s)
    assert model.model_dump() == {"key": "***"} and value not in model.model_dump_json() and value not in repr(model)
    assert copy.deepcopy(s) is s and copy.copy(s) is s and Secret(value) == s and Secret("other") != s
    with pytest.raises(AttributeError):
        s._value = "x"  # type: ignore[misc]
    assert s.reveal() == value


def test_scrubbing_an_error_covers_its_chain_and_its_repr() -> None:
    value = planted()

    class Opaque(Exception):
        def __str__(self) -> str:  # text not from args: cannot be scrubbed in place
            return f"opaque {value}"

    try:
        try:
            raise Opaque()
        except Opaque as inner:
            raise RuntimeError(f"outer {value}") from inner
    except RuntimeError as caught:
        error = caught
    cleaned = scrub_exception(error, Secret(value).redact)
    assert isinstance(cleaned, PermanentToolError) and str(cleaned) == "outer ***"
    assert value not in repr(cleaned) and value not in repr(error.__cause__.args)
    plain = ValueError(f"x {value}")
    assert scrub_exception(plain, Secret(value).redact) is plain and value not in repr(plain)


def test_credentials_come_from_the_env_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[tools.charge_card.credentials]\napi_key = "from-file"\n[tools.other.credentials]\nk = "o"\n')
    environ = {"IRONLOOP_TOOL_CHARGE_CARD_API_KEY": "from-env", "IRONLOOP_CONFIG": str(config), "HOME": "/x"}
    store = Credentials.load(environ=environ, scrub_environ=True)
    assert store.get("charge_card", "api_key") == Secret("from-env")
    assert store.get("other", "k") == Secret("o") and store.get("other", "api_key") is None
    assert environ == {"IRONLOOP_CONFIG": str(config), "HOME": "/x"}  # scrubbed
    assert "from-env" not in repr(store) and "from-file" not in repr(store)
    assert store.redact("a from-env b o") == "a *** b ***"
    assert env_var("charge-card", "api_key") == "IRONLOOP_TOOL_CHARGE_CARD_API_KEY"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[tools.charge_card.credentials]\napi_key = "unterminated\n', "is not valid TOML"),
        ('[tools.charge_card]\napi_key = "sk-in-the-wrong-place"\n', "unknown key(s) api_key"),
        ("[tools.charge_card.credentials]\napi_key = 12345\n", "must be a non-empty string, got int"),
        ('[tools.charge_card.credentials]\n"API-KEY" = "sk-bad-name"\n', "is not a valid name"),
        ('tools = "sk-not-a-table"\n', "'tools' must be a table"),
        ('[tools.charge_card]\ncredentials = "sk-flat"\n', "'credentials' must be a table"),
    ],
)
def test_a_bad_config_file_is_a_clear_error_without_the_value(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "ironloop.toml"
    config.write_text(content)
    with pytest.raises(CredentialsConfigError) as raised:
        Credentials.load(config, environ={})
    assert message in str(raised.value) and str(config) in str(raised.value)
    assert "sk-" not in str(raised.value) and "12345" not in str(raised.value)


def test_an_unreadable_config_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(CredentialsConfigError, match=f"cannot read the ironloop config file {missing}"):
        Credentials.load(environ={"IRONLOOP_CONFIG": str(missing)})


def test_a_missing_required_credential_names_what_to_set() -> None:
    with pytest.raises(MissingCredentialError) as raised:
        Credentials().require("charge_card", "api_key")
    assert "IRONLOOP_TOOL_CHARGE_CARD_API_KEY" in str(raised.value)
    assert "[tools.charge_card.credentials]" in str(raised.value)


def test_grants_must_match_the_signature_and_not_share_a_variable() -> None:
    async def keyed(x: str, key: Annotated[Secret, InjectedToolArg]) -> str:
        """Keyed."""
        return x

    async def plain(x: str) -> str:
        """Plain."""
        return x

    tools = {
        "charge_card": StructuredTool.from_function(coroutine=keyed, name="charge_card"),
        "plain": StructuredTool.from_function(coroutine=plain, name="plain"),
    }
    assert check_grants(tools, {"charge_card": ("key",)}) == {"charge_card": {"key": True}}
    with pytest.raises(ValueError, match="no parameter of that name"):
        check_grants(tools, {"plain": ("key",)})
    with pytest.raises(ValueError, match="no parameter of that name"):
        check_grants(tools, {"charge_card": ("x",)})  # a model-visible parameter is not a credential slot

    async def card_key(card_key: Annotated[Secret, InjectedToolArg]) -> str:
        """Card."""
        return ""

    tools["charge"] = StructuredTool.from_function(coroutine=card_key, name="charge")
    with pytest.raises(ValueError, match="would both read IRONLOOP_TOOL_CHARGE_CARD_KEY"):
        check_grants(tools, {"charge_card": ("key",), "charge": ("card_key",)})
    with pytest.raises(TypeError):
        ToolPolicy(credentials="api_key")  # type: ignore[arg-type]
