"""The MySQL driver, chosen by measurement: asyncmy against aiomysql on the store's own calls.

``uv run --with aiomysql python -m bench.mysql_drivers`` (aiomysql is not a dependency of the
service: ``--with`` lends it for the run) runs, for each driver, the calls on the path of an
answer (a new conversation, a follow-up with its history, the answer stored) and a read of a
whole conversation, against the server at BENCH_MYSQL_URL (default: the local one, user root)
in a database of its own, created for the run and dropped at its end. The drivers take turns
in rounds, so that drift on the machine affects both alike. It prints the p50 and p99 of
each call, in milliseconds, and the CPU time of the process per round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.engine import make_url

from bench.storage import DEFAULT_MYSQL_URL, own_database, percentile
from domain.conversation import FinishedAnswer
from domain.models import Usage
from infrastructure.conversation_store import SqlConversationRepository
from infrastructure.database import create_engine, migrate

DRIVERS = ("asyncmy", "aiomysql")
CALLS = ("new conversation", "follow-up", "answer stored", "conversation read")
ANSWER = "한빛페이에서 결제 플랫폼을 이끌었습니다. 🚀 Kubernetes, Kafka. " * 20


class Driver:
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.engine = create_engine(make_url(url).set(drivername=f"mysql+{name}"))
        self.repository = SqlConversationRepository(self.engine)
        self.samples: dict[str, list[float]] = {call: [] for call in CALLS}
        self.cpu_seconds = 0.0

    async def timed(self, call: str, action: Callable[[], Awaitable[object]]) -> None:
        started = time.perf_counter()
        await action()
        self.samples[call].append((time.perf_counter() - started) * 1e3)

    async def round(self, number: int, turns: int) -> None:
        """One conversation of ``turns`` turns, each answered."""
        cpu = time.process_time()
        repository = self.repository
        conversation_id = f"{self.name}-{number}"
        answer = FinishedAnswer(ANSWER, "completed", "gpt-bench", "stop", None, Usage(9, 9, 18))
        turn: list[int] = []

        async def start() -> None:
            turn.append(
                await repository.begin_turn(
                    conversation_id, "어떤 프로젝트를 했나요?", covered=True, new_conversation=True
                )
            )

        async def follow_up() -> None:
            continued = await repository.continue_conversation(conversation_id, "그 전에는요?")
            assert continued is not None
            turn.append(continued[1])

        await self.timed("new conversation", start)
        await self.timed("answer stored", lambda: repository.finish_turn(turn[-1], answer))
        for _ in range(turns - 1):
            await self.timed("follow-up", follow_up)
            await self.timed("answer stored", lambda: repository.finish_turn(turn[-1], answer))
        await self.timed("conversation read", lambda: repository.get(conversation_id))
        self.cpu_seconds += time.process_time() - cpu


async def measure(url: str, rounds: int, turns: int) -> list[Driver]:
    drivers = [Driver(name, url) for name in DRIVERS]
    try:
        await migrate(drivers[0].engine)
        for number in range(rounds + 5):
            for driver in drivers if number % 2 else reversed(drivers):
                await driver.round(number, turns)
            if number == 4:  # warmed up: pools filled, statements compiled
                for driver in drivers:
                    driver.samples = {call: [] for call in CALLS}
                    driver.cpu_seconds = 0.0
    finally:
        for driver in drivers:
            await driver.engine.dispose()
    return drivers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=200, help="conversations per driver")
    parser.add_argument("--turns", type=int, default=5, help="turns per conversation")
    parser.add_argument("--mysql-url", default=os.environ.get("BENCH_MYSQL_URL", DEFAULT_MYSQL_URL))
    args = parser.parse_args()
    with own_database(args.mysql_url) as url:
        if url is None:
            raise SystemExit(1)
        drivers = asyncio.run(measure(url, args.rounds, args.turns))
    print(
        f"{'call':<18} " + " ".join(f"{d.name + ' p50':>13} {d.name + ' p99':>13}" for d in drivers)
    )
    for call in CALLS:
        cells = " ".join(
            f"{percentile(d.samples[call], 0.5):>13.2f} {percentile(d.samples[call], 0.99):>13.2f}"
            for d in drivers
        )
        print(f"{call:<18} {cells}")
    cpu = " ".join(f"{d.name}: {d.cpu_seconds / args.rounds * 1e3:.2f} ms" for d in drivers)
    print(
        f"\nms; {args.rounds} conversations of {args.turns} turns per driver; CPU per round: {cpu}"
    )


if __name__ == "__main__":
    main()
