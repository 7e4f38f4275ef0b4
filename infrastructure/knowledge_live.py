"""The knowledge index of KNOWLEDGE_DIR, kept in step with the folder without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

from domain.errors import KnowledgeReloadFailed
from domain.models import LoadReport, Passage, RetrievedPassage
from domain.policy import Language
from infrastructure.knowledge import (
    DOCUMENT_SUFFIXES,
    Bm25KnowledgeIndex,
    load_documents,
)
from infrastructure.text_analysis import QueryWord

logger = logging.getLogger(__name__)

# A burst of changes (an editor's save, a copy of many files) is one rebuild: it starts once
# the folder has been quiet this long, or this long after the first change if it goes on.
WATCH_QUIET_SECONDS = 0.5
WATCH_MAX_WAIT_SECONDS = 2.0
_STOP_WATCHING_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Loaded:
    index: Bm25KnowledgeIndex
    report: LoadReport


def _build(load: Callable[[Path], LoadReport], folder: Path) -> _Loaded:
    report = load(folder)
    return _Loaded(Bm25KnowledgeIndex(report.passages), report)


class LiveKnowledgeIndex:
    """A ``KnowledgeIndex`` over a folder that can be rebuilt while the service answers.

    Every query goes to the ``Bm25KnowledgeIndex`` of the last good load. ``reload`` builds a
    new one in a worker thread and swaps it in with one assignment, so a query sees the old
    documents or the new ones, never a mix; a rebuild that fails, or that finds no passages
    where there were some (a folder caught half-copied), keeps the old ones. ``watching``
    reloads whenever the folder changes.
    """

    def __init__(
        self,
        folder: Path,
        index: Bm25KnowledgeIndex,
        report: LoadReport,
        *,
        load: Callable[[Path], LoadReport] = load_documents,
    ) -> None:
        self._folder = folder
        self._load = load
        self._loaded = _Loaded(index, report)
        self._reloading = asyncio.Lock()

    @classmethod
    async def open(
        cls, folder: Path, *, load: Callable[[Path], LoadReport] = load_documents
    ) -> LiveKnowledgeIndex:
        """Load ``folder``, off the event loop. A missing folder is an error; a file that
        cannot be read is only reported."""
        loaded = await asyncio.to_thread(_build, load, folder)
        return cls(folder, loaded.index, loaded.report, load=load)

    @property
    def report(self) -> LoadReport:
        """What the documents in use were loaded from, and which files were skipped."""
        return self._loaded.report

    async def reload(self) -> LoadReport:
        """Rebuild from the folder and swap the new index in; raises
        ``KnowledgeReloadFailed`` (and keeps the old index) if that is not possible."""
        async with self._reloading:  # one rebuild at a time: the last to finish is the newest
            try:
                loaded = await asyncio.to_thread(_build, self._load, self._folder)
            except Exception as error:
                logger.warning(
                    "reloading %s failed (%s): the previous documents stay in use",
                    self._folder,
                    type(error).__name__,
                )
                raise KnowledgeReloadFailed(type(error).__name__) from error
            if not loaded.report.passages and self._loaded.report.passages:
                logger.warning(
                    "reloading %s found no passages: the previous documents stay in use",
                    self._folder,
                )
                raise KnowledgeReloadFailed("no passages")
            self._loaded = loaded
        logger.info(
            "reloaded %d passages from %s (%d files skipped)",
            len(loaded.report.passages),
            self._folder,
            len(loaded.report.skipped),
        )
        return loaded.report

    @asynccontextmanager
    async def watching(
        self,
        *,
        quiet_seconds: float = WATCH_QUIET_SECONDS,
        max_wait_seconds: float = WATCH_MAX_WAIT_SECONDS,
    ) -> AsyncIterator[None]:
        """Reload after each burst of changes to the folder while the block runs."""
        stop = asyncio.Event()
        task = asyncio.create_task(
            self._follow(stop, quiet_seconds, max(quiet_seconds, max_wait_seconds)),
            name="watch-knowledge",
        )
        # One turn of the loop: the watcher registers the folder before the block starts.
        await asyncio.sleep(0)
        try:
            yield
        finally:
            stop.set()  # the watcher's thread sees it within quiet_seconds
            _, pending = await asyncio.wait({task}, timeout=_STOP_WATCHING_SECONDS)
            for still_running in pending:
                still_running.cancel()

    async def _follow(self, stop: asyncio.Event, quiet: float, max_wait: float) -> None:
        try:
            async for _ in awatch(
                self._folder,
                watch_filter=_DocumentChanges(self._folder),
                step=round(quiet * 1000),
                debounce=round(max_wait * 1000),
                stop_event=stop,
            ):
                # A failure is logged, and the next change tries again.
                with contextlib.suppress(KnowledgeReloadFailed):
                    await self.reload()
        except Exception as error:  # e.g. out of inotify watches: reload by hand still works
            logger.warning(
                "watching %s stopped (%s): use POST /admin/knowledge/reload",
                self._folder,
                type(error).__name__,
            )

    # The KnowledgeIndex port, answered by the index in use.

    @property
    def passages(self) -> Sequence[Passage]:
        return self._loaded.index.passages

    def search(self, query: str, limit: int) -> list[RetrievedPassage]:
        return self._loaded.index.search(query, limit)

    def subsections(self, passage: Passage) -> list[str]:
        return self._loaded.index.subsections(passage)

    def query_words(self, query: str) -> list[QueryWord]:
        return self._loaded.index.query_words(query)

    def contact(self, language: Language | None = None) -> Passage | None:
        return self._loaded.index.contact(language)

    def twin(self, passage: Passage) -> Passage | None:
        return self._loaded.index.twin(passage)


class _DocumentChanges(DefaultFilter):
    """Changes that can alter what is loaded: documents, and folders (which have no
    suffix, as far as one can tell once they are gone); nothing hidden."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self._folder = folder.resolve()

    def __call__(self, change: Change, path: str) -> bool:
        if not super().__call__(change, path):
            return False
        changed = Path(path)
        try:
            relative = changed.resolve().relative_to(self._folder)
        except ValueError:
            relative = changed
        if any(part.startswith(".") for part in relative.parts):
            return False
        return changed.suffix.lower() in DOCUMENT_SUFFIXES or not changed.suffix
