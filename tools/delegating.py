"""`DelegatingTool`: a ``BaseTool`` that hands each call to another tool, changing one thing on the way.

ironloop changes how a tool is run without touching LangChain's internals: a subclass overrides the public
``invoke``/``ainvoke`` (to add a call's secrets, `tools.grants`; to run a sync tool on its own thread,
`tools.threads`) and the wrapped tool does everything else: validation, callbacks, the ``ToolMessage``.
The wrapper shows the wrapped tool's name, description and input schema, so ``ToolNode`` finds the same
injected arguments in both (and strips any the model wrote).
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool


class DelegatingTool(BaseTool):
    """Answers to the name of ``tool`` and delegates to it; subclasses override ``invoke``/``ainvoke``."""

    tool: BaseTool

    def __init__(self, tool: BaseTool, **fields: Any):
        super().__init__(
            name=tool.name,
            description=tool.description,
            args_schema=tool.args_schema if tool.args_schema is not None else tool.get_input_schema(),
            return_direct=tool.return_direct,
            response_format=tool.response_format,
            tool=tool,
            **fields,
        )

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} runs only through invoke/ainvoke")
