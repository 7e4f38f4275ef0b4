"""A tiny stdio MCP server for the MCP client's tests.

``echo`` returns its text; ``pid`` returns the server's process id, so a test can kill the
server and watch the toolbox reconnect a fresh one; ``freeze`` never answers, like a server
that hangs. With ``ECHO_STDERR`` set, the server writes it to its standard error at start.

Run: ``python tests/support/echo_mcp_server.py`` (it speaks MCP on stdin/stdout).
"""

from __future__ import annotations

import os
import sys
import time

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


@server.tool()
def freeze() -> str:
    """Never answers in time."""
    time.sleep(3600)
    return "too late"


if __name__ == "__main__":
    if line := os.environ.get("ECHO_STDERR"):
        print(line, file=sys.stderr, flush=True)
    server.run("stdio")
