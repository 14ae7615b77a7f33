"""ironloop's settings: what the environment variables say, and ``ironloop.toml`` under them.

Precedence: a command-line flag > the environment > the configuration file > the default. The file is
``$IRONLOOP_CONFIG`` (which must exist when set), else ``./ironloop.toml`` if there is one. Each top-level key of
the file is an environment variable's name without its prefix, in lower case (``db_url`` is ``$IRONLOOP_DB_URL``;
``base_url`` is ``$OPENAI_BASE_URL``; ``otel_endpoint`` is ``$OTEL_EXPORTER_OTLP_ENDPOINT``); ``[mcp] config``
names an MCP servers file (relative to the config file); ``[tools.<tool>.credentials]`` holds tool secrets,
read only by `tools.credentials` and never kept here. An unknown table or key is an error, as is a value of the
wrong type; the model's API key (``$OPENAI_API_KEY``) is a secret and stays in the environment.

`load` reads them (pydantic-settings); `apply_config_file` puts the file's values into the environment where it
has none, so every part that reads a variable (and every process started from here: Celery's workers, the
sandbox) sees the same settings.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from ironloop.tools.errors import IronloopError
from pydantic import BaseModel, ConfigDict, PositiveFloat, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_ENV = "IRONLOOP_CONFIG"
DEFAULT_CONFIG_FILE = "ironloop.toml"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_AGENT = "ironloop.demo.worker:demo_agent"
DEFAULT_QUEUE = "ironloop"

ENVIRONMENT: dict[str, str] = {
    "db_url": "IRONLOOP_DB_URL",
    "model": "IRONLOOP_MODEL",
    "base_url": "OPENAI_BASE_URL",
    "search_url": "IRONLOOP_SEARCH_URL",
    "search_profile": "IRONLOOP_SEARCH_PROFILE",
    "payments_url": "IRONLOOP_PAYMENTS_URL",
    "broker_url": "IRONLOOP_BROKER_URL",
    "queue": "IRONLOOP_QUEUE",
    "agent": "IRONLOOP_AGENT",
    "lease_ttl_s": "IRONLOOP_LEASE_TTL_S",
    "visibility_s": "IRONLOOP_VISIBILITY_S",
    "traffic_url": "IRONLOOP_TRAFFIC_URL",
    "enqueue": "IRONLOOP_ENQUEUE",
    "bench_dir": "IRONLOOP_BENCH_DIR",
    "otel": "IRONLOOP_OTEL",
    "otel_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "otel_service_name": "OTEL_SERVICE_NAME",
}
"""Each setting → the environment variable that holds it."""


class SettingsError(IronloopError, ValueError):
    """A setting that cannot be used: one line naming where it came from (the file, or the variable)."""


class McpSection(BaseModel):
    """``[mcp]``: the MCP servers file whose tools agents get (`cli.mcp`)."""

    model_config = ConfigDict(extra="forbid")
    config: str | None = None


class Settings(BaseSettings):
    """Every setting of the command line and the workers, each documented in docs/configuration.md."""

    model_config = SettingsConfigDict(extra="forbid")

    db_url: str | None = None
    """The checkpoint database (default ``sqlite:///./ironloop.db``)."""
    model: str | None = None
    base_url: str | None = None
    search_url: str | None = None
    search_profile: str | None = None
    payments_url: str | None = None
    broker_url: str = DEFAULT_BROKER_URL
    queue: str = DEFAULT_QUEUE
    agent: str = DEFAULT_AGENT
    lease_ttl_s: PositiveFloat = 30.0
    visibility_s: PositiveFloat = 300.0
    traffic_url: str | None = None
    enqueue: bool = False
    bench_dir: str | None = None
    otel: bool = False
    otel_endpoint: str | None = None
    otel_service_name: str | None = None
    mcp: McpSection = McpSection()


class EnvironmentSource(PydanticBaseSettingsSource):
    """The settings the environment holds, under their historical names (`ENVIRONMENT`)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        super().__init__(settings_cls)
        self.values = {name: environ[var] for name, var in ENVIRONMENT.items() if environ.get(var, "").strip()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


class FileSource(PydanticBaseSettingsSource):
    """The settings ``ironloop.toml`` holds (its ``[tools]`` credentials left to `tools.credentials`)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None):
        super().__init__(settings_cls)
        self.path = path
        self.values = read_file(path) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def read_file(path: Path) -> dict[str, Any]:
    """The file's settings; ``[mcp] config`` made relative to the file's folder."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read the ironloop config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from None
    document.pop("tools", None)  # tool credentials: `tools.credentials` reads and checks them
    mcp = document.get("mcp")
    if isinstance(mcp, dict) and isinstance(mcp.get("config"), str) and mcp["config"]:
        document["mcp"] = {**mcp, "config": str(path.parent / mcp["config"])}
    return document


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$IRONLOOP_CONFIG`` (an error if it does not exist), else ``./ironloop.toml`` if it exists, else ``None``."""
    env = os.environ if environ is None else environ
    named = env.get(CONFIG_ENV, "").strip()
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"${CONFIG_ENV} names {named}, which is not a file")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    path: Path | bool | None = True,
) -> Settings:
    """The settings: ``flags`` (those given, not ``None``) over ``environ`` (default ``os.environ``) over the
    config file (``path``, or `config_file` when ``True``; ``None``: no file) over the defaults."""
    env = os.environ if environ is None else environ
    file = config_file(env) if path is True else path if isinstance(path, Path) else None
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    environment = EnvironmentSource(Settings, env)

    class Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, environment, FileSource(settings_cls, file)

    try:
        return Loaded(**given)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, file, environment.values, given)) from None


def _one_line(error: ValidationError, file: Path | None, from_env: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """The first problem, saying where the value came from."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    key = ".".join(location)
    if first["type"] == "extra_forbidden":
        known = ", ".join(
            [*McpSection.model_fields]
            if location[0] == "mcp"
            else [*ENVIRONMENT, "[mcp]", "[tools.<tool>.credentials]"]
        )
        what = f"table [{key}]" if isinstance(first.get("input"), dict) else f"key {key!r}"
        return f"{file}: unknown {what}; known: {known}"
    name = location[0]
    if isinstance(first.get("input"), dict) and name not in given and name not in from_env:
        return f"{file}: [{key}] is a table, but {key} is a setting: write {key} = ... at the top of the file"
    if name in given:
        where = f"--{name.replace('_', '-')}"
    elif name in from_env:
        where = f"${ENVIRONMENT[name]}"
    else:
        where = f"{file}: {key}"
    return f"{where}: {first['msg'].lower()} (got {type(first.get('input')).__name__})"  # no value: it may be secret


def apply_config_file(environ: MutableMapping[str, str] | None = None) -> Settings | None:
    """Read the config file, if there is one, and set each of its settings the environment lacks; its settings
    (``None`` without a file). Without a file nothing is read or imported beyond this module."""
    env = os.environ if environ is None else environ
    file = config_file(env)
    if file is None:
        return None
    settings = load(environ=env, path=file)
    in_file = read_file(file)
    for name, var in ENVIRONMENT.items():
        if env.get(var, "").strip() or name not in in_file:
            continue
        value = getattr(settings, name)
        env[var] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return settings
