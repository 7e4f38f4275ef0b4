"""A tiny stdio MCP server for the MCP client's tests.

``echo`` returns its text; ``pid`` returns the server's process id, so a test can kill the
server and watch the toolbox reconnect a fresh one.

Run: ``python tests/support/echo_mcp_server.py`` (it speaks MCP on stdin/stdout).
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("echo")


@server.tool()
def echo(text: str) -> str:
    """Return ``text`` unchanged."""
    return text


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


if __name__ == "__main__":
    server.run("stdio")
