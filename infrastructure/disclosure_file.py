"""The applicant's disclosure policy: ``policy.yaml`` beside the documents in KNOWLEDGE_DIR.

    undisclosed:
      - topic: salary
        keywords: [salary, compensation, 연봉, 급여, 처우]
        answer:
          en: Minji prefers to discuss compensation directly.
          ko: 연봉 등 처우는 김민지 본인과 직접 협의합니다.

A broken policy file stops start-up with a message naming it: answering as if it were not
there could disclose what the applicant asked to keep private.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.disclosure import DisclosurePolicy, UndisclosedTopic

POLICY_FILE = "policy.yaml"


class PolicyFileError(Exception):
    """The policy file exists but cannot be used; the message says what to fix."""


class _Topic(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=1)
    keywords: list[str] = Field(min_length=1)
    answer: dict[str, str] = Field(default_factory=dict)


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    undisclosed: list[_Topic] = Field(default_factory=list)


def load_disclosure_policy(folder: Path) -> DisclosurePolicy:
    """The policy in ``folder/policy.yaml``, or the default one (protected topics only)."""
    path = folder / POLICY_FILE
    if not path.is_file():
        return DisclosurePolicy()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        parsed = _PolicyFile.model_validate(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise PolicyFileError(f"{path}: cannot be read ({type(error).__name__})") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise PolicyFileError(f"{path}: {problems}") from None
    topics = tuple(
        UndisclosedTopic(
            name=topic.topic,
            keywords=tuple(k.strip() for k in topic.keywords if k.strip()),
            messages={lang: text.strip() for lang, text in topic.answer.items()},
        )
        for topic in parsed.undisclosed
    )
    return DisclosurePolicy(topics)
