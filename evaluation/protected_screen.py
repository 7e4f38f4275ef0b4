"""How well the protected-characteristics screen does on the labelled set.

    uv run python -m evaluation.protected_screen            # both halves, with the misses of dev
    uv run python -m evaluation.protected_screen --split heldout

``evaluation/protected/questions.yaml`` holds protected questions (which must be declined) and
legitimate hiring questions that look like them (which must be answered), each in the ``dev``
half (the rules are tuned on it) or the ``heldout`` half (never tuned on; the CI targets of
``tests/unit/test_protected_screen.py`` are measured on it). Misses are printed for ``dev``
only, so that nobody tunes on the held-out half by accident.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

QUESTIONS_FILE = Path(__file__).parent / "protected" / "questions.yaml"

Split = Literal["dev", "heldout"]


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: Literal["protected", "legitimate"]
    category: str
    kind: str
    language: str
    split: Split


def load_examples(path: Path = QUESTIONS_FILE) -> list[Example]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Example(**item) for item in raw]


@dataclass(frozen=True, slots=True)
class Rates:
    protected: int
    protected_declined: int
    legitimate: int
    legitimate_declined: int
    declined_by_kind: dict[str, tuple[int, int]]
    """Per kind of example: (declined, total)."""

    @property
    def recall(self) -> float:
        """Share of protected questions declined."""
        return self.protected_declined / self.protected if self.protected else 1.0

    @property
    def false_decline_rate(self) -> float:
        """Share of legitimate questions declined."""
        return self.legitimate_declined / self.legitimate if self.legitimate else 0.0


def measure(declines: Callable[[str], bool], examples: Sequence[Example]) -> Rates:
    declined: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for example in examples:
        key = f"{example.label}/{example.kind}/{example.language}"
        total[key] += 1
        declined[key] += declines(example.text)
    protected = [e for e in examples if e.label == "protected"]
    legitimate = [e for e in examples if e.label == "legitimate"]
    return Rates(
        protected=len(protected),
        protected_declined=sum(declines(e.text) for e in protected),
        legitimate=len(legitimate),
        legitimate_declined=sum(declines(e.text) for e in legitimate),
        declined_by_kind={key: (declined[key], total[key]) for key in sorted(total)},
    )


def screen_declines(text: str) -> bool:
    """Whether the service's screen declines ``text`` as a question."""
    from domain.protected import screen

    return screen(text) is not None


def _report(name: str, rates: Rates) -> None:
    print(
        f"{name}: protected declined {rates.protected_declined}/{rates.protected} "
        f"({rates.recall:.3f}); legitimate declined {rates.legitimate_declined}/"
        f"{rates.legitimate} ({rates.false_decline_rate:.3f})"
    )
    for key, (declined, total) in rates.declined_by_kind.items():
        print(f"  {key:32} declined {declined:3}/{total}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "heldout", "both"), default="both")
    args = parser.parse_args(argv)
    examples = load_examples()
    splits: tuple[Split, ...] = ("dev", "heldout") if args.split == "both" else (args.split,)
    for split in splits:
        half = [e for e in examples if e.split == split]
        _report(split, measure(screen_declines, half))
        if split == "dev":
            for e in half:
                if (e.label == "protected") != screen_declines(e.text):
                    print(f"  miss ({e.label}, {e.kind}): {e.text!r}")


if __name__ == "__main__":
    main()
