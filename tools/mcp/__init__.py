"""Tools from MCP servers, under the same policies as any tool (needs the ``mcp`` extra: ``ironloop[mcp]``).

- `config`: the ``mcpServers`` JSON other MCP clients use, plus ironloop's per-server settings;
- `session`: one long-lived session per server, renewed when it breaks, cancelling what it abandons;
- `errors`: JSON-RPC and transport failures sorted into the runtime's error tree;
- `annotations`: tool annotations → `ToolPolicy` (only for trusted servers);
- `tools`: an MCP tool as a LangChain tool (content blocks, ``isError``, ``_meta`` idempotency key, progress);
- `servers`: `MCPServers`, the context manager that ties them together.
"""

try:
    import mcp as _mcp  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("ironloop.tools.mcp needs the MCP SDK: pip install 'ironloop[mcp]'") from exc

from ironloop.tools.mcp.annotations import PolicyChoice, choose_policy, policies_for
from ironloop.tools.mcp.config import MCPConfigError, ServerConfig, load_config, retry_on_error_text
from ironloop.tools.mcp.errors import (
    MCPConnectionLost,
    MCPProtocolError,
    MCPServerUnavailable,
    MCPSessionExpired,
    MCPTimeoutError,
    MCPTransientError,
)
from ironloop.tools.mcp.servers import MCPServers, ServedTool
from ironloop.tools.mcp.session import CancellingClientSession, ServerConnection
from ironloop.tools.mcp.tools import IDEMPOTENCY_KEY_META, MCPToolError

__all__ = [
    "IDEMPOTENCY_KEY_META",
    "CancellingClientSession",
    "MCPConfigError",
    "MCPConnectionLost",
    "MCPProtocolError",
    "MCPServerUnavailable",
    "MCPServers",
    "MCPSessionExpired",
    "MCPTimeoutError",
    "MCPToolError",
    "MCPTransientError",
    "PolicyChoice",
    "ServedTool",
    "ServerConfig",
    "ServerConnection",
    "choose_policy",
    "load_config",
    "policies_for",
    "retry_on_error_text",
]
