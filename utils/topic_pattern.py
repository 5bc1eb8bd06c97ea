"""RabbitMQ topic semantics for routing-key patterns, for filtering on the client side (scripts/replay.py):
words are separated by dots, `*` stands for exactly one word, `#` for zero or more words."""

from __future__ import annotations

from collections.abc import Iterable


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether a topic exchange would route `routing_key` to a binding with `pattern`."""
    return _words_match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _words_match(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, key[start:]) for start in range(len(key) + 1))
    return bool(key) and head in ("*", key[0]) and _words_match(rest, key[1:])


class TopicFilter:
    """Matches routing keys against any of several patterns; remembers each key's answer (keys are few, messages
    many)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = list(patterns)
        self._answers: dict[str, bool] = {}

    def __call__(self, routing_key: str) -> bool:
        answer = self._answers.get(routing_key)
        if answer is None:
            answer = any(topic_matches(pattern, routing_key) for pattern in self.patterns)
            self._answers[routing_key] = answer
        return answer
