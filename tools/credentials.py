"""Tool credentials: per-tool secrets from the environment or a TOML file, handed only to the tool they belong to.

A tool's secret is looked up by (tool name, credential name):

- ``$IRONLOOP_TOOL_<TOOL>_<NAME>`` (upper case, other characters as ``_``): ``IRONLOOP_TOOL_CHARGE_CARD_API_KEY``;
- else ``[tools.<tool>.credentials] <name> = "..."`` in the config file: ``$IRONLOOP_CONFIG``, else
  ``./ironloop.toml`` if it exists.

A tool receives one only if its `ToolPolicy` lists the name in ``credentials`` and its signature has a parameter
of that name annotated ``InjectedToolArg`` (see `credential_params`): the model never sees the parameter (it is
not in the tool's schema), never writes it (``ToolNode`` strips model-supplied values of injected parameters),
and it is never in a message, a checkpoint or the ledger. Values travel as `Secret`, whose text is ``***``.

A credential is one line of printable text: surrounding whitespace (the newline ``$(cat key)`` or an editor
leaves) is removed when it is loaded, and one with a control character left inside (a line break, a tab, an
escape) is refused with `CredentialsConfigError`, which names where it came from and never the value. Sent in an
HTTP header, such a value makes the client fail with an error quoting it escaped, where no plain search finds it.
"""

from __future__ import annotations

import hmac
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from ironloop.tools.errors import CredentialsConfigError, MissingCredentialError
from ironloop.tools.redaction import REDACTED, redact_forms, secret_forms
from langchain_core.tools import BaseTool, InjectedToolArg
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic_core import core_schema

ENV_PREFIX = "IRONLOOP_TOOL_"
CONFIG_ENV = "IRONLOOP_CONFIG"
DEFAULT_CONFIG_FILE = "ironloop.toml"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class Secret:
    """A credential value that does not show itself: ``repr``/``str``/f-strings give ``Secret('***')``.

    `reveal` is the one way to read it, so every use is greppable. Pickling (and so multiprocessing) raises,
    ``json.dumps`` raises, and pydantic dumps it as ``"***"``: a secret is not written anywhere by accident.
    """

    __slots__ = ("_forms", "_value")
    _value: str
    _forms: tuple[str, ...]
    """The value's raw and escaped forms (`tools.redaction.secret_forms`): what `redact` removes."""

    def __init__(self, value: str):
        if not isinstance(value, str) or not value:
            raise TypeError("a Secret holds a non-empty string")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_forms", secret_forms(value))

    def reveal(self) -> str:
        """The value itself: only for the request that needs it (an ``Authorization`` header)."""
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the value, raw or escaped (`tools.redaction.secret_forms`), replaced
        by ``***``."""
        return redact_forms(text, self._forms)

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Secret is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled or serialised; pass it in process only")

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__reduce__()

    def __copy__(self) -> Secret:  # immutable: copies (of tool-call args, configs) share it
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # LangChain validates tool input with the tool's pydantic schema, then model_dump()s it: dump as "***".
        return core_schema.is_instance_schema(
            cls, serialization=core_schema.plain_serializer_function_ser_schema(lambda _: REDACTED)
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        return {"type": "string", "format": "password", "writeOnly": True}


def env_var(tool: str, name: str) -> str:
    """The environment variable of a tool's credential: ``env_var("charge_card", "api_key")`` is
    ``IRONLOOP_TOOL_CHARGE_CARD_API_KEY``."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", f"{tool}_{name}".upper())


class Credentials:
    """Per-tool secrets: ``{tool: {name: Secret}}`` from a config file, overridden by the environment.

    Lookups are by (tool, name), so a tool can only ever be given what is filed under its own name.
    """

    def __init__(
        self,
        secrets: Mapping[str, Mapping[str, Secret | str]] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        source: str = "ironloop.toml",
    ):
        self._file: dict[str, dict[str, Secret]] = {}
        for tool, names in (secrets or {}).items():
            for name, value in names.items():
                _check_name(name, f"credential of tool {tool!r}")
                if not isinstance(value, Secret):
                    value = Secret(one_line(value, f"credential {name!r} of tool {tool!r}"))
                self._file.setdefault(tool, {})[name] = value
        self._env: dict[str, Secret] = {
            key: Secret(one_line(value, f"${key}"))
            for key, value in (environ or {}).items()
            if key.startswith(ENV_PREFIX) and value.strip()
        }
        self.source = source
        self._forms = sorted({form for secret in self.secrets() for form in secret._forms}, key=len, reverse=True)

    @classmethod
    def load(
        cls,
        config_path: str | os.PathLike[str] | None = None,
        *,
        environ: MutableMapping[str, str] | None = None,
        scrub_environ: bool = False,
    ) -> Credentials:
        """From ``config_path`` (else ``$IRONLOOP_CONFIG``, else ``./ironloop.toml`` if present) and ``environ``
        (default ``os.environ``). ``scrub_environ`` removes the ``IRONLOOP_TOOL_*`` variables from ``environ``
        once read, so child processes (a sandbox, a shell tool) do not inherit them."""
        env = os.environ if environ is None else environ
        explicit = config_path or env.get(CONFIG_ENV)
        path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
        secrets = read_config(path) if explicit or path.exists() else {}
        store = cls(secrets, environ=dict(env), source=str(path))
        if scrub_environ:
            for key in [k for k in env if k.startswith(ENV_PREFIX)]:
                del env[key]
        return store

    def get(self, tool: str, name: str) -> Secret | None:
        """The tool's credential ``name``: the environment variable, else the config file, else ``None``."""
        return self._env.get(env_var(tool, name)) or self._file.get(tool, {}).get(name)

    def require(self, tool: str, name: str) -> Secret:
        secret = self.get(tool, name)
        if secret is None:
            raise MissingCredentialError(
                f"{tool} needs the credential {name!r}, and none is configured: set {env_var(tool, name)}, "
                f'or {name} = "..." under [tools.{tool}.credentials] in {self.source}'
            )
        return secret

    def secrets(self) -> list[Secret]:
        """Every configured value, whichever tool it belongs to: what `redact` removes."""
        return [*self._env.values(), *(s for names in self._file.values() for s in names.values())]

    def redact(self, text: str) -> str:
        """``text`` with every configured secret, raw or escaped, replaced by ``***`` (longest first, so none is
        half-replaced)."""
        return redact_forms(text, self._forms)

    def __bool__(self) -> bool:
        return bool(self._env or self._file)

    def __repr__(self) -> str:
        return f"Credentials(env={sorted(self._env)}, file={ {t: sorted(n) for t, n in self._file.items()} })"

    def __reduce__(self) -> Any:
        raise TypeError("Credentials cannot be pickled or serialised")


def read_config(path: Path) -> dict[str, dict[str, Secret]]:
    """The ``[tools.<tool>.credentials]`` tables of a TOML config file, checked for shape."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise CredentialsConfigError(f"cannot read the ironloop config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CredentialsConfigError(f"{path} is not valid TOML: {exc}") from None
    tools = document.get("tools", {})
    if not isinstance(tools, dict):
        raise CredentialsConfigError(f"{path}: 'tools' must be a table of [tools.<tool>] sections")
    found: dict[str, dict[str, Secret]] = {}
    for tool, section in tools.items():
        where = f"{path}: [tools.{tool}]"
        if not isinstance(section, dict):
            raise CredentialsConfigError(f"{where} must be a table")
        if unknown := sorted(set(section) - {"credentials"}):
            raise CredentialsConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected only 'credentials'")
        names = section.get("credentials", {})
        if not isinstance(names, dict):
            raise CredentialsConfigError(f"{where}: 'credentials' must be a table of name = \"value\"")
        for name, value in names.items():
            _check_name(name, f"{where}.credentials key")
            if not isinstance(value, str) or not value.strip():
                # the value's type only: the value itself is not echoed
                raise CredentialsConfigError(
                    f"{where}.credentials.{name} must be a non-empty string, got {type(value).__name__}"
                )
            found.setdefault(tool, {})[name] = Secret(one_line(value, f"{where}.credentials.{name}"))
    return found


def one_line(value: str, where: str) -> str:
    """A credential's value as it is used: without surrounding whitespace, and refused (naming ``where``, never
    the value) if a control character is left inside."""
    if not isinstance(value, str):
        raise CredentialsConfigError(f"{where} must be a string, got {type(value).__name__}")
    stripped = value.strip()
    if not stripped:
        raise CredentialsConfigError(f"{where} is empty")
    if found := _CONTROL.search(stripped):
        raise CredentialsConfigError(
            f"{where} contains a control character ({found.group()!r} at position {found.start()}); a credential "
            "must be one line of printable text"
        )
    return stripped


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CredentialsConfigError(f"{what} {name!r} is not a valid name (lower case letters, digits, _)")


def credential_params(tool: BaseTool) -> dict[str, bool]:
    """The tool's parameters that take a `Secret` through ``InjectedToolArg``: name → required (no default)."""
    fields: dict[str, FieldInfo] = getattr(tool.get_input_schema(), "model_fields", {})  # pydantic 2 schemas
    return {
        name: field.is_required()
        for name, field in fields.items()
        if _is_injected(field.annotation, field.metadata) and _mentions_secret(field.annotation)
    }


def _is_injected(annotation: Any, metadata: Iterable[Any] = ()) -> bool:
    """Marked ``InjectedToolArg`` (the marker class or an instance), in ``Annotated`` metadata at any depth."""
    marker = InjectedToolArg
    if any(isinstance(m, marker) or (isinstance(m, type) and issubclass(m, marker)) for m in metadata):
        return True
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _is_injected(inner, extra)
    return any(_is_injected(arg) for arg in get_args(annotation))


def _mentions_secret(annotation: Any) -> bool:
    if annotation is Secret:
        return True
    return any(_mentions_secret(a) for a in get_args(annotation))


def check_grants(tools: Mapping[str, BaseTool], grants: Mapping[str, Iterable[str]]) -> dict[str, dict[str, bool]]:
    """Check each tool's granted credential names against its signature; name → required, per tool.

    A grant without a matching ``InjectedToolArg`` parameter would be silently dropped; two grants that share an
    environment variable (``charge`` + ``card_key`` vs ``charge_card`` + ``key``) would hand one tool's secret to
    the other. Both are configuration errors.
    """
    needs: dict[str, dict[str, bool]] = {}
    owners: dict[str, tuple[str, str]] = {}
    for tool_name, names in grants.items():
        names = tuple(names)
        if not names:
            continue
        params = credential_params(tools[tool_name])
        if missing := [n for n in names if n not in params]:
            raise ValueError(
                f"{tool_name} is granted credential(s) {', '.join(missing)} but has no parameter of that name "
                "annotated Annotated[Secret, InjectedToolArg]"
            )
        for name in names:
            var = env_var(tool_name, name)
            if var in owners and owners[var] != (tool_name, name):
                other = owners[var]
                raise ValueError(f"credentials {other[0]}.{other[1]} and {tool_name}.{name} would both read {var}")
            owners[var] = (tool_name, name)
        needs[tool_name] = {name: params[name] for name in names}
    return needs
