"""Semantic search with OpenAI embeddings, for paraphrases and questions across languages.

Documents are embedded once: vectors are cached on disk by a hash of the model and the text,
so a restart or a reload of the folder embeds only what changed. Each question costs one
small embeddings call; if it fails or is slow, answers go on with lexical search alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openai
from openai import AsyncOpenAI

from domain.models import Passage, RetrievedPassage
from domain.ports import KnowledgeIndex

logger = logging.getLogger(__name__)

BATCH_SIZE = 64
QUERY_TIMEOUT_SECONDS = 3.0
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
    ) -> None:
        self._client = client
        self._knowledge = knowledge
        self._cache = cache
        self._model = model
        self._min_similarity = min_similarity
        self._indexed: tuple[Passage, ...] = ()
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._refresh = asyncio.Lock()

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self._model}\n{text}".encode()).hexdigest()

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            response = await self._client.embeddings.create(
                model=self._model,
                input=list(texts[start : start + BATCH_SIZE]),
                encoding_format="float",
            )
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        return np.asarray(vectors, dtype=np.float32)

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
        try:
            async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
                await self.refresh()
                query_vector = (await self._embed([query]))[0]
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

    def _relevance(self, similarity: float) -> float:
        """Similarity on the lexical coverage scale: the threshold maps to 0.5."""
        scaled = 0.5 + (similarity - self._min_similarity) * 0.5 / FULL_RELEVANCE_MARGIN
        return round(min(1.0, max(0.0, scaled)), 4)
