"""Retrieval latency on the bundled sample profile: ``uv run python -m bench.retrieval``.

Prints p50/p99/max per query over a mixed Korean and English question set, plus the time to
load and index the profile, and the service's whole search (``SearchProfile``) of follow-ups
resolved against the conversation ("And before that?" searches the question before it
again). Targets live here, not in timed unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace

from application.search import SearchProfile
from infrastructure.knowledge import Bm25KnowledgeIndex, load_passages
from settings import SAMPLE_PROFILE_DIR

QUESTIONS = [
    "어떤 프로젝트를 했나요?",
    "경력이 몇 년인가요?",
    "쿠버네티스 경험이 있나요?",
    "입사 가능일이 언제인가요?",
    "실패 경험을 알려주세요",
    "원격 근무 가능한가요?",
    "연락처를 알려주세요",
    "What is her biggest achievement?",
    "How many years of experience does she have?",
    "When can she start?",
    "Can she speak English?",
    "What did she do at Sora Logistics?",
    "Has she led a team?",
    "What is her favorite food?",
]


FOLLOW_UPS = [
    ("그 전에는 어디서 일했나요?", ["현재 어디서 일하나요?"]),
    ("And before that?", ["Where does she work now?", "And before that?"]),
    ("팀 규모는 어땠나요?", ["한빛페이에서 무슨 일을 했나요?"]),
    ("Who contributes to it?", ["Tell me about her open-source tool."]),
    ("Summarize her career", []),
]
"""(question, earlier questions): follow-ups, the last a question about the whole profile."""


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--target-us", type=float, default=1000.0)
    parser.add_argument("--follow-up-target-us", type=float, default=5000.0)
    parser.add_argument(
        "--scale", type=int, default=1, help="copies of the profile, to model a longer one"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    passages = load_passages(SAMPLE_PROFILE_DIR)
    copies = [replace(p, source=f"copy{n}/{p.source}") for n in range(args.scale) for p in passages]
    index = Bm25KnowledgeIndex(copies)
    load_ms = (time.perf_counter() - started) * 1e3
    characters = sum(len(p.text) for p in index.passages)

    for question in QUESTIONS:  # warm up caches (stemmer, numpy)
        index.search(question, 4)
    samples: list[float] = []
    for _ in range(args.rounds):
        for question in QUESTIONS:
            begin = time.perf_counter()
            index.search(question, 4)
            samples.append((time.perf_counter() - begin) * 1e6)

    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    pages = characters / 2500  # a printed page holds about 2,500 characters
    print(
        f"profile: {len(index.passages)} passages, {characters:,} characters (~{pages:.0f} pages)"
    )
    print(f"load and index: {load_ms:.1f} ms")
    print(
        f"search ({len(samples):,} queries): p50 {p50:.0f} us, p99 {p99:.0f} us, "
        f"mean {statistics.fmean(samples):.0f} us, max {max(samples):.0f} us"
    )
    verdict = "PASS" if p99 < args.target_us else "FAIL"
    print(f"{verdict}: p99 under {args.target_us:.0f} us")

    follow_ups = asyncio.run(_follow_up_samples(SearchProfile(index), args.rounds))
    f50, f99 = percentile(follow_ups, 0.5), percentile(follow_ups, 0.99)
    print(
        f"follow-ups, whole search ({len(follow_ups):,}): p50 {f50:.0f} us, p99 {f99:.0f} us, "
        f"max {max(follow_ups):.0f} us"
    )
    follow_up_verdict = "PASS" if f99 < args.follow_up_target_us else "FAIL"
    print(f"{follow_up_verdict}: follow-up p99 under {args.follow_up_target_us:.0f} us")
    if "FAIL" in (verdict, follow_up_verdict):
        raise SystemExit(1)


async def _follow_up_samples(search: SearchProfile, rounds: int) -> list[float]:
    for question, earlier in FOLLOW_UPS:  # warm up (the timeline is built once)
        await search.search(question, earlier=earlier)
    samples: list[float] = []
    for _ in range(rounds):
        for question, earlier in FOLLOW_UPS:
            begin = time.perf_counter()
            await search.search(question, earlier=earlier)
            samples.append((time.perf_counter() - begin) * 1e6)
    return samples


if __name__ == "__main__":
    main()
