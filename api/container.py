"""What the API is given to work with: use cases and ports, wired by the composition root.

``bootstrap.py`` builds one ``Container`` in the app's lifespan; routes, the MCP endpoint and
the admin API take what they need from it (``api/dependencies.py``) and never build adapters.
"""

from __future__ import annotations

from dataclasses import dataclass

from application.ask import AskApplicant
from application.resume import ResumableAnswers
from application.review import ReviewConversations
from application.search import SearchProfile
from application.spool import SpooledAnswers
from common.lifecycle import Lifecycle
from domain.ports import (
    ConversationRepository,
    KnowledgeIndex,
    KnowledgeLibrary,
    RateLimiter,
    ToolServers,
)
from settings import Settings


@dataclass(frozen=True, slots=True)
class Container:
    settings: Settings
    knowledge: KnowledgeIndex
    live_knowledge: KnowledgeLibrary | None
    """The folder ``knowledge`` was loaded from, when it can be reloaded (not a test's own)."""
    conversations: ConversationRepository
    ask: AskApplicant
    search: SearchProfile
    """The profile's one search: the chat's grounding, the MCP and the agents' tools."""
    review: ReviewConversations
    lifecycle: Lifecycle
    rate_limiter: RateLimiter | None
    mcp_toolbox: ToolServers | None = None
    """The MCP_SERVERS the agents may use (with ENGINE=agents), kept connected."""
    spooled: SpooledAnswers | None = None
    """Answers the store could not take, kept in the spool until it can (with the SQL store)."""
    resumable: ResumableAnswers | None = None
    """Answers that outlive their connection for a resume; ``None`` with RESUME_WINDOW_SECONDS=0
    (answers stream directly)."""
