"""Outside MCP servers whose tools the agents may use (MCP_SERVERS), kept connected.

MCP_SERVERS names a JSON (``.json``) or YAML (``.yaml``, ``.yml``) file: a list of servers,
or ``{"servers": [...]}``. Each is ``stdio`` (a command this process starts) or
``streamable_http`` (a URL); ``${NAME}`` in a string is replaced by the environment
variable ``NAME``, so tokens stay out of the file. See ``docs/mcp.md``.

A server is never allowed to break a chat: ``McpToolbox`` gives each server a supervisor
task that connects it, checks it periodically (listing its tools, within its timeout) and,
when it fails, closes it and connects a fresh one with exponential backoff (1 s up to 60 s).
``connected()`` returns only the servers whose last check passed; a server that cannot
connect is logged (its name and the error type, never a URL, header or message) and skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from agents.mcp import (
    MCPServer,
    MCPServerStdio,
    MCPServerStdioParams,
    MCPServerStreamableHttp,
    MCPServerStreamableHttpParams,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from settings import Settings

logger = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 30.0
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
CLOSE_TIMEOUT_SECONDS = 5.0
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class McpServersFileError(Exception):
    """MCP_SERVERS cannot be used; the message names the file and what to fix."""


class _Server(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """For connecting, for each check, and for each request to the server."""


class StdioServerConfig(_Server):
    transport: Literal["stdio"]
    command: str = Field(min_length=1)
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    """Added to a minimal environment (PATH, HOME, ...): the app's own secrets are not passed."""
    cwd: Path | None = None


class StreamableHttpServerConfig(_Server):
    transport: Literal["streamable_http"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


McpServerConfig = Annotated[
    StdioServerConfig | StreamableHttpServerConfig, Field(discriminator="transport")
]


class _ServersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    servers: list[McpServerConfig]

    @field_validator("servers")
    @classmethod
    def _unique_names(
        cls, value: list[StdioServerConfig | StreamableHttpServerConfig]
    ) -> list[StdioServerConfig | StreamableHttpServerConfig]:
        names = [server.name for server in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"server names must be unique; repeated: {', '.join(repeated)}")
        return value


def _expand(value: Any, where: str) -> Any:
    """``${NAME}`` in every string replaced from the environment; unset is an error."""
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise McpServersFileError(f"{where} uses ${{{name}}}, which is not set")
            return os.environ[name]

        return _VARIABLE.sub(variable, value)
    if isinstance(value, list):
        return [_expand(item, f"{where}.{index}") for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {
            key: _expand(item, f"{where}.{key}" if where else str(key))
            for key, item in value.items()
        }
    return value


def load_mcp_servers(path: Path) -> tuple[StdioServerConfig | StreamableHttpServerConfig, ...]:
    """The servers listed in ``path``, validated; ``McpServersFileError`` names what is wrong.

    Messages never quote a value from the file (it may hold a token), only where it is.
    """
    where = f"MCP_SERVERS {path}"
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise McpServersFileError(f"{where}: the file name must end in .json, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as error:
        raise McpServersFileError(f"{where}: cannot be read ({type(error).__name__})") from None
    except (ValueError, yaml.YAMLError) as error:
        kind = "JSON" if suffix == ".json" else "YAML"
        raise McpServersFileError(f"{where}: not valid {kind} ({type(error).__name__})") from None
    if isinstance(raw, list):
        raw = {"servers": raw}
    if not isinstance(raw, dict):
        raise McpServersFileError(
            f"{where}: expected a list of servers (or {{servers: [...]}}), not {type(raw).__name__}"
        )
    try:
        parsed = _ServersFile.model_validate(_expand(raw, ""))
    except McpServersFileError as error:
        raise McpServersFileError(f"{where}: {error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise McpServersFileError(f"{where}: {problems}") from None
    return tuple(parsed.servers)


ConnectableServer = MCPServerStdio | MCPServerStreamableHttp
ServerFactory = Callable[[StdioServerConfig | StreamableHttpServerConfig], ConnectableServer]


def build_server(config: StdioServerConfig | StreamableHttpServerConfig) -> ConnectableServer:
    """An Agents SDK server for ``config``, not yet connected. Tools are listed once per
    connection and cached, so an agent's run needs no round trip to learn them."""
    if isinstance(config, StdioServerConfig):
        stdio: MCPServerStdioParams = {
            "command": config.command,
            "args": list(config.args),
            "env": dict(config.env),
        }
        if config.cwd is not None:
            stdio["cwd"] = config.cwd
        return MCPServerStdio(
            stdio,
            cache_tools_list=True,
            name=config.name,
            client_session_timeout_seconds=config.timeout_seconds,
        )
    http: MCPServerStreamableHttpParams = {
        "url": config.url,
        "headers": dict(config.headers),
        "timeout": config.timeout_seconds,
    }
    return MCPServerStreamableHttp(
        http,
        cache_tools_list=True,
        name=config.name,
        client_session_timeout_seconds=config.timeout_seconds,
    )


@dataclass(slots=True)
class _Slot:
    config: StdioServerConfig | StreamableHttpServerConfig
    server: ConnectableServer | None = None
    """Set while connected and answering; ``None`` otherwise."""
    tried: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first connection attempt is over, whatever its outcome."""


class McpToolbox:
    """The servers of MCP_SERVERS, each kept connected by its own supervisor task.

    Each task owns its server from connect to cleanup (the MCP client's cancel scopes must be
    left in the task that entered them). After a failure a *new* server object is connected:
    an Agents SDK server is not meant to be reused after ``cleanup()``.
    """

    def __init__(
        self,
        configs: Sequence[StdioServerConfig | StreamableHttpServerConfig],
        *,
        factory: ServerFactory = build_server,
        check_interval: float = CHECK_INTERVAL_SECONDS,
        backoff_initial: float = BACKOFF_INITIAL_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
    ) -> None:
        self._slots = [_Slot(config) for config in configs]
        self._factory = factory
        self._check_interval = check_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max

    @property
    def names(self) -> list[str]:
        return [slot.config.name for slot in self._slots]

    def connected(self) -> list[MCPServer]:
        """The servers that answered their last check: what an agent may use right now."""
        return [slot.server for slot in self._slots if slot.server is not None]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[McpToolbox]:
        """Supervise every server; the first attempts are over (each within its timeout)
        before this yields, so the first question already has the tools that connected."""
        tasks = [
            asyncio.create_task(self._supervise(slot), name=f"mcp-server:{slot.config.name}")
            for slot in self._slots
        ]
        try:
            for slot in self._slots:
                await slot.tried.wait()
            yield self
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, slot: _Slot) -> None:
        name = slot.config.name
        delay = self._backoff_initial
        reconnecting = False
        while True:
            try:
                server = self._factory(slot.config)
            except Exception as error:  # parameters the SDK rejects: no retry can help
                logger.error("MCP server %s cannot be used: %s", name, type(error).__name__)
                slot.tried.set()
                return
            try:
                problem = await self._connect(server, slot.config.timeout_seconds)
                if problem is None:
                    tools = len(server.cached_tools or ())
                    verb = "reconnected" if reconnecting else "connected"
                    logger.info("MCP server %s %s (%d tools)", name, verb, tools)
                    slot.server = server
                    slot.tried.set()
                    delay = self._backoff_initial
                    problem = await self._watch(server, slot.config.timeout_seconds)
                    slot.server = None
                    logger.warning("MCP server %s stopped answering (%s)", name, problem)
                else:
                    logger.warning("MCP server %s could not connect (%s)", name, problem)
            finally:
                slot.server = None
                slot.tried.set()
                await self._close(server)
            logger.info("MCP server %s: next attempt in %.0f s", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)
            reconnecting = True

    @staticmethod
    async def _connect(server: ConnectableServer, limit_seconds: float) -> str | None:
        """``None`` once connected with its tools listed, else the error's type name."""
        try:
            async with asyncio.timeout(limit_seconds):
                await server.connect()  # type: ignore[no-untyped-call]
                await server.list_tools()  # fills the cache the agents read from
        except Exception as error:
            return type(error).__name__
        return None

    async def _watch(self, server: ConnectableServer, limit_seconds: float) -> str:
        """Returns (the error's type name) when the server stops answering."""
        while True:
            await asyncio.sleep(self._check_interval)
            session = server.session
            if session is None:
                return "closed"
            try:
                async with asyncio.timeout(limit_seconds):
                    # Not ping: servers of protocol 2026-07-28 do not offer it.
                    await session.list_tools()
            except Exception as error:
                return type(error).__name__

    @staticmethod
    async def _close(server: ConnectableServer) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await server.cleanup()  # type: ignore[no-untyped-call]
        except Exception as error:
            logger.debug("closing MCP server %s failed: %s", server.name, type(error).__name__)


@asynccontextmanager
async def open_mcp_toolbox(
    settings: Settings, *, factory: ServerFactory = build_server
) -> AsyncIterator[McpToolbox | None]:
    """The toolbox of MCP_SERVERS, running; ``None`` without the setting.

    The file is validated whatever the engine, so a mistake shows at start-up; its servers
    are connected only for ENGINE=agents, the one engine that uses tools.
    """
    if settings.mcp_servers is None:
        yield None
        return
    try:
        configs = load_mcp_servers(settings.mcp_servers)
    except McpServersFileError as error:
        # Logged here: uvicorn reports a failed start-up with a traceback the logs leave out.
        logger.error("%s", error)  # names the file and the field; quotes no value
        raise
    if settings.resolved_engine != "agents":
        logger.info(
            "MCP_SERVERS lists %d servers; they are used only with ENGINE=agents", len(configs)
        )
        yield None
        return
    toolbox = McpToolbox(configs, factory=factory)
    async with toolbox.running():
        yield toolbox
