"""Thin ``Annotated`` dependencies: routes get wired objects, never build adapters.

Every dependency is ``async def``, even those that only look something up: FastAPI runs a
plain ``def`` dependency in its thread pool, a round trip through another thread (and, under
load, a wait behind a whole turn of the event loop) per dependency and request.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from api.client_address import client_address, rate_limit_key, trusted_networks
from api.container import Container
from api.errors import TooManyRequests
from api.observability import Metrics
from application.ask import AskApplicant
from application.review import ReviewConversations
from domain.models import RateDecision
from domain.ports import KnowledgeLibrary


def container_of(request: Request) -> Container:
    """What the lifespan wired, as ``ContainerDep`` gives it. The answering routes call this
    instead: FastAPI solves every dependency on every request, and their three came to 3 % of
    the instructions of starting an answer (docs/performance.md)."""
    container: Container = request.state.container
    return container


def metrics_of(request: Request) -> Metrics:
    """The app's metrics, as ``MetricsDep`` gives them (see ``container_of``)."""
    metrics: Metrics = request.app.state.metrics
    return metrics


async def _container(request: Request) -> Container:
    return container_of(request)


ContainerDep = Annotated[Container, Depends(_container)]


async def _ask(container: ContainerDep) -> AskApplicant:
    return container.ask


async def _review(container: ContainerDep) -> ReviewConversations:
    return container.review


async def _live_knowledge(container: ContainerDep) -> KnowledgeLibrary:
    if container.live_knowledge is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "The documents were not loaded from KNOWLEDGE_DIR."
        )
    return container.live_knowledge


async def _metrics(request: Request) -> Metrics:
    return metrics_of(request)


AskDep = Annotated[AskApplicant, Depends(_ask)]
ReviewDep = Annotated[ReviewConversations, Depends(_review)]
LiveKnowledgeDep = Annotated[KnowledgeLibrary, Depends(_live_knowledge)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]

_bearer = HTTPBearer(auto_error=False, description="The ADMIN_TOKEN setting.")


async def _require_admin(
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer ``ADMIN_TOKEN``, compared in constant time; without the setting, no admin API."""
    expected = container.settings.admin_token
    if expected is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Send 'Authorization: Bearer <ADMIN_TOKEN>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminDep = Depends(_require_admin)


_RATE_DECISION = "ask_the_applicant.rate_decision"


async def rate_limit_decision(scope: Scope) -> RateDecision | None:
    """Count this request against its client's RATE_LIMIT_PER_MINUTE, once per request.

    ``None`` when limits are off. The decision is kept in the scope: ``RequestBodyGuard``
    (``api/protection.py``) takes it before the body is read, so that invalid bodies are
    counted too, and the dependency below then finds it instead of counting again.
    """
    if _RATE_DECISION in scope:
        decision: RateDecision | None = scope[_RATE_DECISION]
        return decision
    container: Container | None = scope.get("state", {}).get("container")
    decision = None
    if container is not None and container.rate_limiter is not None:
        trusted = trusted_networks(container.settings.trusted_proxies)
        cloudfront = container.settings.trusted_proxy_kind == "cloudfront"
        client = rate_limit_key(client_address(scope, trusted, cloudfront=cloudfront))
        decision = await container.rate_limiter.hit(client)
    scope[_RATE_DECISION] = decision
    return decision


async def _rate_limit(request: Request) -> None:
    decision = await rate_limit_decision(request.scope)
    if decision is not None and not decision.allowed:
        raise TooManyRequests(decision.limit, decision.retry_after_seconds)


# For a route's ``dependencies=[...]``: the route is limited per client, before anything else.
RateLimited = Depends(_rate_limit)
