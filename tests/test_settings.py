"""One configuration (issue 17): ``ironloop.toml`` (or ``$IRONLOOP_CONFIG``) holds what the environment variables
hold, loaded with pydantic-settings; a flag beats the environment, which beats the file, which beats the default.
An unknown table or key, a value of the wrong type and a missing ``$IRONLOOP_CONFIG`` file are one-line errors
(exit 2), never ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ironloop.benchmarks.otlp_receiver import OTLPReceiver
from ironloop.distributed.settings import Settings as FleetSettings
from ironloop.settings import ENVIRONMENT, SettingsError, apply_config_file, load

ROOT = Path(__file__).resolve().parent.parent


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``ironloop ARGS`` in ``tmp_path``, with none of the caller's ironloop, OpenAI or OpenTelemetry variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IRONLOOP_", "OPENAI_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "ironloop", *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_flag_over_environment_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "ironloop.toml"
    config.write_text('model = "from-file"\nqueue = "q-file"\nlease_ttl_s = 7\notel = true\n[mcp]\nconfig = "m.json"\n')
    env = {"IRONLOOP_MODEL": "from-env", "IRONLOOP_QUEUE": "q-env"}
    settings = load({"model": "from-flag", "queue": None}, environ=env, path=config)
    assert settings.model == "from-flag"  # flag > environment
    assert settings.queue == "q-env"  # environment > file (a flag left out is None: not given)
    assert settings.lease_ttl_s == 7.0 and settings.otel is True  # file > default
    assert settings.visibility_s == 300.0 and settings.broker_url.startswith("amqp://")  # defaults
    assert settings.mcp.config == str(tmp_path / "m.json")  # relative to the file
    assert load(environ={}, path=None).model is None


def test_the_file_is_ironloop_config_else_the_local_ironloop_toml(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ironloop.toml").write_text('queue = "local"\n')
    named = tmp_path / "named.toml"
    named.write_text('queue = "named"\n')
    assert load(environ={}).queue == "local"
    assert load(environ={"IRONLOOP_CONFIG": str(named)}).queue == "named"
    with pytest.raises(SettingsError, match=r"^\$IRONLOOP_CONFIG names .*nope.toml, which is not a file$"):
        load(environ={"IRONLOOP_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[database]\nurl = "x"\n', "unknown table [database]"),
        ('dburl = "sqlite:///x.db"\n', "unknown key 'dburl'; known: db_url, model"),
        ('[mcp]\nconfig = "m.json"\nservers = 1\n', "unknown key 'mcp.servers'; known: config"),
        ("lease_ttl_s = -1\n", "lease_ttl_s: input should be greater than 0 (got int)"),
        ('otel = "maybe"\n', "otel: input should be a valid boolean"),
        ("queue = [\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "ironloop.toml"
    config.write_text(content)
    with pytest.raises(SettingsError) as raised:
        load(environ={}, path=config)
    assert message in str(raised.value) and str(config) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_bad_variable_is_named_as_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^\$IRONLOOP_VISIBILITY_S: input should be a valid number"):
        load(environ={"IRONLOOP_VISIBILITY_S": "soon"}, path=None)
    with pytest.raises(SettingsError, match=r"^--queue: input should be a valid string"):
        load({"queue": 5}, environ={}, path=None)


def test_tool_credentials_are_allowed_in_the_file_but_never_kept(tmp_path: Path) -> None:
    config = tmp_path / "ironloop.toml"
    config.write_text('queue = "q"\n[tools.charge_card.credentials]\napi_key = "sk-not-a-setting"\n')
    settings = load(environ={}, path=config)
    assert "sk-not-a-setting" not in repr(settings) and "sk-not-a-setting" not in settings.model_dump_json()


def test_the_file_fills_the_environment_where_it_is_silent(tmp_path: Path) -> None:
    config = tmp_path / "ironloop.toml"
    config.write_text('db_url = "sqlite:///file.db"\nqueue = "q-file"\nenqueue = true\nbase_url = "http://m/v1"\n')
    environ = {"IRONLOOP_CONFIG": str(config), "IRONLOOP_QUEUE": "q-env"}
    apply_config_file(environ)
    assert environ == {
        "IRONLOOP_CONFIG": str(config),
        "IRONLOOP_QUEUE": "q-env",
        "IRONLOOP_DB_URL": "sqlite:///file.db",
        "IRONLOOP_ENQUEUE": "1",
        "OPENAI_BASE_URL": "http://m/v1",
    }
    assert set(ENVIRONMENT.values()) >= {"IRONLOOP_DB_URL", "IRONLOOP_BROKER_URL", "IRONLOOP_SEARCH_URL"}


def test_the_fleet_reads_the_same_settings(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('broker_url = "redis://127.0.0.1:6379/0"\nqueue = "q-file"\nlease_ttl_s = 12\n')
    for name in ENVIRONMENT.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IRONLOOP_CONFIG", str(config))
    monkeypatch.setenv("IRONLOOP_QUEUE", "q-env")
    fleet = FleetSettings.from_env()
    assert (fleet.broker_url, fleet.queue, fleet.lease_ttl_s, fleet.redis_broker) == (
        "redis://127.0.0.1:6379/0",
        "q-env",
        12.0,
        True,
    )
    config.write_text("lease_ttl_s = 0\n")
    with pytest.raises(ValueError, match="lease_ttl_s: input should be greater than 0"):
        FleetSettings.from_env()


def test_the_cli_takes_the_database_from_flag_then_environment_then_file(tmp_path: Path) -> None:
    (tmp_path / "ironloop.toml").write_text(f'db_url = "sqlite:///{tmp_path / "file.db"}"\n')
    from_file = cli(tmp_path, "db", "upgrade")
    from_env = cli(tmp_path, "db", "upgrade", IRONLOOP_DB_URL=f"sqlite:///{tmp_path / 'env.db'}")
    from_flag = cli(
        tmp_path,
        "db",
        "upgrade",
        "--db",
        f"sqlite:///{tmp_path / 'flag.db'}",
        IRONLOOP_DB_URL=f"sqlite:///{tmp_path / 'env.db'}",
    )
    for done, name in ((from_file, "file.db"), (from_env, "env.db"), (from_flag, "flag.db")):
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"sqlite database '{tmp_path / name}'"), done.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[telemetry]\nenabled = true\n", "ironloop.toml: unknown table [telemetry]; known: db_url"),
        ("[otel]\nenabled = true\n", "ironloop.toml: [otel] is a table, but otel is a setting: write otel = ..."),
        ('modle = "gpt"\n', "ironloop.toml: unknown key 'modle'"),
    ],
)
def test_the_cli_refuses_an_unknown_table_or_key_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "ironloop.toml").write_text(content)
    done = cli(tmp_path, "db", "upgrade")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ironloop: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "ironloop.db").exists()


def test_the_cli_refuses_a_missing_config_file_in_one_line(tmp_path: Path) -> None:
    done = cli(tmp_path, "threads", IRONLOOP_CONFIG=str(tmp_path / "missing.toml"))
    assert done.returncode == 2
    assert done.stderr == f"ironloop: error: $IRONLOOP_CONFIG names {tmp_path / 'missing.toml'}, which is not a file\n"


def test_the_files_otel_switch_and_endpoint_turn_tracing_on(tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        (tmp_path / "ironloop.toml").write_text(
            f'otel = true\notel_endpoint = "{receiver.url}"\notel_service_name = "from-the-file"\n'
        )
        done = cli(tmp_path, "demo", "--profile", "none", "--db", f"sqlite:///{tmp_path / 'd.db'}")
        assert done.returncode == 0, done.stderr[-2000:]
        off = cli(
            tmp_path,
            "demo",
            "--profile",
            "none",
            "--db",
            f"sqlite:///{tmp_path / 'd.db'}",
            IRONLOOP_OTEL="0",
            OTEL_SDK_DISABLED="true",
        )
        assert off.returncode == 0, off.stderr[-2000:]
    runs = [s for s in receiver.received.spans if s.name.startswith("invoke_agent")]
    assert len(runs) == 1 and runs[0].resource["service.name"] == "from-the-file"
