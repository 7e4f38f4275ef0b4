"""Semantic search with OpenAI embeddings, for paraphrases and questions across languages.

Documents are embedded once: vectors are cached on disk by a hash of the model and the text,
so a restart or a reload of the folder embeds only what changed. A question costs one small
embeddings call the first time it is asked: its vector is then kept in memory (and in Redis
when ``REDIS_URL`` is set, so every replica shares it), and the same question asked at the
same time by several recruiters waits for one call. If the call fails or outlasts its
timeout (``SEMANTIC_TIMEOUT_SECONDS``), answers go on with lexical search alone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx2
import numpy as np
import openai
from openai import AsyncOpenAI

from domain.models import Passage, RetrievedPassage
from domain.ports import KnowledgeIndex

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

BATCH_SIZE = 64
QUERY_TIMEOUT_SECONDS = 1.0
"""The default of ``SEMANTIC_TIMEOUT_SECONDS``: the longest a question waits for its vector."""
QUERY_VECTORS_IN_MEMORY = 4096
"""Question vectors kept in memory (6 KB each for ``text-embedding-3-small``): 24 MB at most."""
SHARED_VECTOR_TTL_SECONDS = 7 * 24 * 3600
SHARED_VECTOR_TIMEOUT_SECONDS = 0.05
"""Redis answers on the network next door in well under a millisecond; a slower answer is a
miss, not a wait."""
# Similarity above the threshold by this much counts as fully relevant (score 1.0).
FULL_RELEVANCE_MARGIN = 0.2


def searchable_text(passage: Passage) -> str:
    return "\n".join((*passage.heading_path, passage.text))


class EmbeddingCache:
    """Vectors by key in a small SQLite file (the standard library's driver, off the loop)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
            )

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with sqlite3.connect(self._path) as connection:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = connection.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({marks})",  # noqa: S608 - placeholders only
                    chunk,
                )
                found.update({key: np.frombuffer(blob, dtype=np.float32) for key, blob in rows})
        return found

    def put_many(self, vectors: dict[str, np.ndarray]) -> None:
        with sqlite3.connect(self._path) as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                [(key, vector.astype(np.float32).tobytes()) for key, vector in vectors.items()],
            )


class SharedVectors(Protocol):
    """Question vectors shared by the replicas (Redis), consulted after the memory cache."""

    async def get(self, key: str) -> np.ndarray | None: ...

    async def put(self, key: str, vector: np.ndarray) -> None: ...


class RedisVectors:
    """Question vectors in Redis under ``ask:qvec:<key>``, as float32 bytes, for a week.

    Every failure (Redis down, slow, evicted) is a miss: the question is embedded again.
    """

    PREFIX = "ask:qvec:"

    def __init__(self, redis: Redis, *, ttl_seconds: int = SHARED_VECTOR_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def get(self, key: str) -> np.ndarray | None:
        try:
            async with asyncio.timeout(SHARED_VECTOR_TIMEOUT_SECONDS):
                blob = await self._redis.get(self.PREFIX + key)
        except Exception as error:  # a timeout, a connection or a Redis error: all misses
            logger.debug("shared question vectors unavailable: %s", type(error).__name__)
            return None
        if not isinstance(blob, bytes):
            return None
        return np.frombuffer(blob, dtype=np.float32)

    async def put(self, key: str, vector: np.ndarray) -> None:
        try:
            async with asyncio.timeout(SHARED_VECTOR_TIMEOUT_SECONDS):
                await self._redis.set(
                    self.PREFIX + key, vector.astype(np.float32).tobytes(), ex=self._ttl
                )
        except Exception as error:
            logger.debug("could not share a question vector: %s", type(error).__name__)


class QueryVectors:
    """Question vectors by key: the most recent ``size`` in memory, then ``shared`` if any."""

    def __init__(self, size: int = QUERY_VECTORS_IN_MEMORY, shared: SharedVectors | None = None):
        self._size = size
        self._shared = shared
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()

    def get_local(self, key: str) -> np.ndarray | None:
        vector = self._memory.get(key)
        if vector is not None:
            self._memory.move_to_end(key)
        return vector

    async def get_shared(self, key: str) -> np.ndarray | None:
        if self._shared is None:
            return None
        vector = await self._shared.get(key)
        if vector is not None:
            self._remember(key, vector)
        return vector

    async def put(self, key: str, vector: np.ndarray) -> None:
        self._remember(key, vector)
        if self._shared is not None:
            await self._shared.put(key, vector)

    def _remember(self, key: str, vector: np.ndarray) -> None:
        self._memory[key] = vector
        self._memory.move_to_end(key)
        while len(self._memory) > self._size:
            self._memory.popitem(last=False)


def _vector(embedding: str | Sequence[float]) -> np.ndarray:
    """A vector as the API sent it: base64 of little-endian float32 values, or (from a server
    that ignores ``encoding_format``) a list of numbers."""
    if isinstance(embedding, str):
        try:
            raw = base64.b64decode(embedding, validate=True)
        except binascii.Error as error:
            raise ValueError("an embedding is not valid base64") from error
        if not raw or len(raw) % 4:
            raise ValueError("an embedding's base64 is not a whole number of float32 values")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)


def _vectors_of(payload: object, texts: int) -> list[np.ndarray]:
    """The vectors of an embeddings response's ``data``, in the order of the texts sent;
    ``ValueError`` for a body that is not one vector per text."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != texts:
        raise ValueError("the embeddings response has not one vector per text")
    by_index: dict[int, np.ndarray] = {}
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        embedding = item.get("embedding") if isinstance(item, dict) else None
        if type(index) is not int or not isinstance(embedding, str | list):
            raise ValueError("an embeddings response item has no index or no embedding")
        by_index[index] = _vector(embedding)
    if sorted(by_index) != list(range(texts)):
        raise ValueError("the embeddings response's indexes are not those of the texts")
    return [by_index[index] for index in range(texts)]


def _retrieved(done: asyncio.Future[np.ndarray]) -> None:
    """Marks a call's error as seen: no one else may have waited for it."""
    if not done.cancelled():
        done.exception()


def _normalized(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


class EmbeddingSearch:
    """``SemanticSearch`` over the current passages of ``knowledge``."""

    def __init__(
        self,
        client: AsyncOpenAI,
        knowledge: KnowledgeIndex,
        cache: EmbeddingCache,
        *,
        model: str,
        min_similarity: float,
        query_vectors: QueryVectors | None = None,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> None:
        self._client = client
        self._knowledge = knowledge
        self._cache = cache
        self._model = model
        self._min_similarity = min_similarity
        self._indexed: tuple[Passage, ...] = ()
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._refresh = asyncio.Lock()
        self._query_vectors = query_vectors or QueryVectors()
        self._timeout = timeout
        # The same question asked again before its vector came back waits for that call.
        self._embedding: dict[str, asyncio.Future[np.ndarray]] = {}

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self._model}\n{text}".encode()).hexdigest()

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), BATCH_SIZE):
            # base64, as the SDK asks by default: 1,536 float32 values in one string, where a
            # list of floats would be 1,536 JSON numbers, each built into a Python float by
            # the SDK (3.9 against 1.4 ms of CPU a call, measured: on the way to the first token).
            # Sent through the SDK's client as a plain POST (its way to make a request it has
            # no method for: same key, base URL, timeouts and errors), and read here, without
            # ``embeddings.create``'s transform of the parameters and models of the response:
            # 0.62 ms of CPU a call instead of 0.85 (docs/performance.md).
            batch = list(texts[start : start + BATCH_SIZE])
            response = await self._client.post(
                "/embeddings",
                body={"model": self._model, "input": batch, "encoding_format": "base64"},
                cast_to=httpx2.Response,
            )
            vectors.extend(_vectors_of(response.json(), len(batch)))
        return np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)

    async def refresh(self) -> None:
        """Vectors for the passages the knowledge index holds now; only new text is embedded."""
        passages = tuple(self._knowledge.passages)
        # The index hands out the same tuple until it reloads: identity is the cheap check.
        if passages is self._indexed or passages == self._indexed:
            return
        async with self._refresh:
            if passages == self._indexed:
                return
            keys = [self._key(searchable_text(p)) for p in passages]
            cached = await asyncio.to_thread(self._cache.get_many, keys)
            missing = [i for i, key in enumerate(keys) if key not in cached]
            if missing:
                fresh = await self._embed([searchable_text(passages[i]) for i in missing])
                new = {keys[i]: fresh[row] for row, i in enumerate(missing)}
                await asyncio.to_thread(self._cache.put_many, new)
                cached.update(new)
                logger.info(
                    "embedded %d passages (%d cached)", len(missing), len(keys) - len(missing)
                )
            matrix = np.stack([cached[key] for key in keys]) if keys else np.zeros((0, 0))
            self._matrix = _normalized(matrix.astype(np.float32))
            self._indexed = passages

    async def similar(self, query: str, limit: int) -> list[RetrievedPassage]:
        key = self._key(query)
        query_vector = self._query_vectors.get_local(key)
        stale = self._indexed is not self._knowledge.passages
        if query_vector is None or stale:
            try:
                async with asyncio.timeout(self._timeout):
                    if not stale:
                        # In this task: under load each task started is a turn of the event
                        # loop, before the call goes out and again once it is back.
                        query_vector = await self._query_vector(query, key)
                    elif query_vector is None:
                        # After a reload the documents and the question are embedded together.
                        query_vector = await self._refreshed_with(query, key)
                    else:
                        await self.refresh()
            except (openai.OpenAIError, TimeoutError, ValueError) as error:
                logger.warning("semantic search unavailable: %s", type(error).__name__)
                return []
        if not self._indexed:
            return []
        similarities = self._matrix @ _normalized(query_vector)
        order = np.argsort(-similarities)[:limit]
        return [
            RetrievedPassage(self._indexed[int(i)], self._relevance(float(similarities[i])))
            for i in order
        ]

    async def _refreshed_with(self, query: str, key: str) -> np.ndarray:
        """The question's vector, embedded while the documents are refreshed. A failed
        question stops the refresh (``asyncio.gather`` would leave it running, unawaited and
        past the timeout); a failed refresh is raised once the question's call is back."""
        refreshing = asyncio.create_task(self.refresh())
        try:
            vector = await self._query_vector(query, key)
            await refreshing
        finally:
            refreshing.cancel()
        return vector

    async def _query_vector(self, query: str, key: str) -> np.ndarray:
        """From Redis, from a call already in flight for the same text, or from a new call."""
        vector = await self._query_vectors.get_shared(key)
        if vector is not None:
            return vector
        pending = self._embedding.get(key)
        if pending is not None:
            try:
                # Shielded: one waiter's timeout must not cancel the call the others wait for.
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # The question that made the call gave up on it (its client left).
                raise TimeoutError() from None
        # The call is made in the asking task (no task of its own: see ``similar``); the same
        # question asked meanwhile waits for its outcome.
        outcome: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(_retrieved)
        self._embedding[key] = outcome
        try:
            vector = await self._embed_query(query, key)
        except BaseException as error:
            if isinstance(error, Exception):
                outcome.set_exception(error)
            else:
                outcome.cancel()
            raise
        else:
            outcome.set_result(vector)
            return vector
        finally:
            self._embedding.pop(key, None)

    async def _embed_query(self, query: str, key: str) -> np.ndarray:
        started = time.perf_counter()
        vector: np.ndarray = (await self._embed([query]))[0]
        logger.debug("embedded a question in %.0f ms", (time.perf_counter() - started) * 1e3)
        await self._query_vectors.put(key, vector)
        return vector

    def _relevance(self, similarity: float) -> float:
        """Similarity on the lexical coverage scale: the threshold maps to 0.5."""
        scaled = 0.5 + (similarity - self._min_similarity) * 0.5 / FULL_RELEVANCE_MARGIN
        return round(min(1.0, max(0.0, scaled)), 4)
