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
``health()`` says, per server, whether it is connected, the tools it offers and its last
error, for ``/metrics`` and the admin API.

Each server may list the ``tools`` the agents may use (an allow-list); the agents see every
outside tool under its server's name (``mcp_<server>__<tool>``), so two servers that offer
the same tool never clash. A stdio server's standard error is read line by line into this
app's log (logger ``infrastructure.mcp_client.stderr``), with secrets redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from agents.mcp import (
    MCPServer,
    MCPServerStdio,
    MCPServerStdioParams,
    MCPServerStreamableHttp,
    MCPServerStreamableHttpParams,
    create_static_tool_filter,
)
from agents.mcp.server import MCPStreamTransport
from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from domain.models import ToolServerHealth
from domain.ports import ToolServerWatcher
from settings import Settings

logger = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 30.0
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
CLOSE_TIMEOUT_SECONDS = 5.0
STDERR_LINE_MAX_CHARS = 1000
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

stderr_logger = logging.getLogger(f"{__name__}.stderr")


class McpServersFileError(Exception):
    """MCP_SERVERS cannot be used; the message names the file and what to fix."""


class _Server(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    """Letters, digits, ``_`` and ``-``: it is part of every tool name the model sees."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """For connecting, for each check, and for each request to the server: a tool call to a
    frozen server fails after it, and the model is told the tool failed."""
    tools: tuple[str, ...] | None = None
    """The server's tools the agents may use; all of them when unset."""


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

# What a secret looks like in a line of someone else's log: a query parameter or a
# ``key=value`` named like a credential, an ``Authorization`` scheme, a password in a URL,
# and the shapes of common API tokens.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"(?i)([?&;][^=&#\s]*(?:token|key|secret|passw|auth|sig|credential|code)[^=&#\s]*=)"
            r"[^&#\s]+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2[redacted]"),
    (re.compile(r"(?i)(://)[^/\s:@]+:[^/\s@]+@"), r"\1[redacted]@"),
    (
        re.compile(
            r"(?i)\b([A-Za-z0-9_-]*(?:token|secret|passw(?:or)?d|api[_-]?key)[A-Za-z0-9_-]*)"
            r"(['\"]?\s*[=:]\s*['\"]?)(?!\[redacted\])[^\s,;&'\"]+"
        ),
        r"\1\2[redacted]",
    ),
    (
        re.compile(
            r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
            r"|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9._-]+)"
        ),
        "[redacted]",
    ),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def redact(line: str, secrets: Iterable[str] = ()) -> str:
    """``line`` without what looks like a secret, nor any of ``secrets`` (the values the
    server's configuration gave it), control characters or more than a thousand characters."""
    for secret in secrets:
        line = line.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_PATTERNS:
        line = pattern.sub(replacement, line)
    line = _CONTROL.sub("", line)
    if len(line) > STDERR_LINE_MAX_CHARS:
        line = line[:STDERR_LINE_MAX_CHARS] + "…"
    return line


def _log_lines(read_fd: int, server: str, secrets: tuple[str, ...]) -> None:
    """Read a server's standard error until it closes; each line becomes one log record."""
    with open(read_fd, encoding="utf-8", errors="replace") as stream:
        for raw in stream:
            line = redact(raw.rstrip("\r\n"), secrets)
            if line.strip():
                stderr_logger.info("MCP server %s: %s", server, line, extra={"mcp_server": server})


@asynccontextmanager
async def _stdio_with_logged_stderr(
    params: StdioServerParameters, server: str, secrets: tuple[str, ...]
) -> AsyncIterator[MCPStreamTransport]:
    """``stdio_client`` with the process's standard error on a pipe this process reads
    (a thread per server: it only waits for lines), instead of the app's own stderr."""
    read_fd, write_fd = os.pipe()
    reader = threading.Thread(
        target=_log_lines, args=(read_fd, server, secrets), name=f"mcp-stderr:{server}", daemon=True
    )
    reader.start()
    with os.fdopen(write_fd, "w", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as streams:
            errlog.close()  # the process holds its own end: the reader sees EOF when it exits
            yield streams


class LoggedStdioServer(MCPServerStdio):
    """A stdio server whose standard error goes into the app's log, redacted."""

    def __init__(self, params: MCPServerStdioParams, *, secrets: tuple[str, ...], **options: Any):
        super().__init__(params, **options)
        self._secrets = secrets

    def create_streams(self) -> AbstractAsyncContextManager[MCPStreamTransport]:
        return _stdio_with_logged_stderr(self.params, self.name, self._secrets)


_SECRET_NAME = re.compile(r"(?i)token|key|secret|passw|auth|credential|pat\b")


def _secret_values(env: dict[str, str]) -> tuple[str, ...]:
    """The values of the variables named like a credential, longest first."""
    found = {value for name, value in env.items() if _SECRET_NAME.search(name) and len(value) >= 6}
    return tuple(sorted(found, key=len, reverse=True))


def build_server(config: StdioServerConfig | StreamableHttpServerConfig) -> ConnectableServer:
    """An Agents SDK server for ``config``, not yet connected. Tools are listed once per
    connection and cached, so an agent's run needs no round trip to learn them."""
    tool_filter = create_static_tool_filter(
        allowed_tool_names=list(config.tools) if config.tools is not None else None
    )
    if isinstance(config, StdioServerConfig):
        stdio: MCPServerStdioParams = {
            "command": config.command,
            "args": list(config.args),
            "env": dict(config.env),
        }
        if config.cwd is not None:
            stdio["cwd"] = config.cwd
        return LoggedStdioServer(
            stdio,
            secrets=_secret_values(config.env),
            cache_tools_list=True,
            name=config.name,
            client_session_timeout_seconds=config.timeout_seconds,
            tool_filter=tool_filter,
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
        tool_filter=tool_filter,
    )


def offered_tools(
    config: StdioServerConfig | StreamableHttpServerConfig, listed: Iterable[str]
) -> tuple[str, ...]:
    """The tools of a server the agents may use: those it lists, within its allow-list."""
    names = tuple(listed)
    return names if config.tools is None else tuple(n for n in names if n in config.tools)


@dataclass(slots=True)
class _Slot:
    config: StdioServerConfig | StreamableHttpServerConfig
    server: ConnectableServer | None = None
    """Set while connected and answering; ``None`` otherwise."""
    tried: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first connection attempt is over, whatever its outcome."""
    tools: tuple[str, ...] = ()
    """The tools it offered the agents when it last connected."""
    last_error: str | None = None
    failures: int = 0
    since: datetime | None = None
    """When it last connected or was last found failing."""

    def health(self) -> ToolServerHealth:
        return ToolServerHealth(
            name=self.config.name,
            connected=self.server is not None,
            tools=self.tools if self.server is not None else (),
            last_error=self.last_error,
            failures=self.failures,
            since=self.since,
        )

    def failed(self, problem: str) -> None:
        self.server = None
        self.last_error = problem
        self.failures += 1
        self.since = datetime.now(UTC)


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
        self._watchers: list[ToolServerWatcher] = []
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

    def health(self) -> list[ToolServerHealth]:
        """Each server: connected or not, the tools it offers, its last error."""
        return [slot.health() for slot in self._slots]

    def watch(self, watcher: ToolServerWatcher) -> None:
        """Tell ``watcher`` every server's health now and after each connection or failure."""
        self._watchers.append(watcher)
        for slot in self._slots:
            watcher.tool_server_changed(slot.health())

    def _connected(self, slot: _Slot, server: ConnectableServer) -> None:
        slot.server = server
        slot.last_error = None
        slot.since = datetime.now(UTC)
        self._changed(slot)

    def _failed(self, slot: _Slot, problem: str) -> None:
        slot.failed(problem)
        self._changed(slot)

    def _changed(self, slot: _Slot) -> None:
        health = slot.health()
        for watcher in self._watchers:
            watcher.tool_server_changed(health)

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
            self._report_shared_tool_names()
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
                self._failed(slot, type(error).__name__)
                logger.error("MCP server %s cannot be used: %s", name, type(error).__name__)
                slot.tried.set()
                return
            try:
                problem = await self._connect(server, slot.config.timeout_seconds)
                if problem is None:
                    listed = [tool.name for tool in server.cached_tools or ()]
                    slot.tools = offered_tools(slot.config, listed)
                    verb = "reconnected" if reconnecting else "connected"
                    logger.info(
                        "MCP server %s %s (%d tools offered: %s)",
                        name,
                        verb,
                        len(slot.tools),
                        ", ".join(slot.tools) or "none",
                    )
                    missing = sorted(set(slot.config.tools or ()) - set(listed))
                    if missing:
                        logger.warning(
                            "MCP server %s does not offer the allowed tools %s",
                            name,
                            ", ".join(missing),
                        )
                    self._connected(slot, server)
                    slot.tried.set()
                    delay = self._backoff_initial
                    problem = await self._watch(server, slot.config.timeout_seconds)
                    self._failed(slot, problem)
                    logger.warning("MCP server %s stopped answering (%s)", name, problem)
                else:
                    self._failed(slot, problem)
                    logger.warning("MCP server %s could not connect (%s)", name, problem)
            finally:
                slot.server = None
                slot.tried.set()
                await self._close(server)
            logger.info("MCP server %s: next attempt in %.0f s", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)
            reconnecting = True

    def _report_shared_tool_names(self) -> None:
        """Say which tools two servers both offer: the agents see them apart, by server."""
        offered: dict[str, list[str]] = {}
        for slot in self._slots:
            for tool in slot.tools:
                offered.setdefault(tool, []).append(slot.config.name)
        for tool, servers in sorted(offered.items()):
            if len(servers) > 1:
                logger.info(
                    "MCP servers %s all offer %s; the agents see %s",
                    ", ".join(servers),
                    tool,
                    ", ".join(f"mcp_{server}__{tool}" for server in servers),
                )

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
