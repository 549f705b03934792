"""Text built piece by piece that remembers where each PII value landed: the ground truth's offsets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity_type: str
    value: str
    canary_repetitions: int | None = None


class Text:
    """A string under construction and the PII spans in it."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[Span] = []
        self.length = 0

    def add(self, text: str) -> Text:
        self.parts.append(text)
        self.length += len(text)
        return self

    def pii(self, entity_type: str, value: str, canary_repetitions: int | None = None) -> Text:
        end = self.length + len(value)
        self.spans.append(Span(self.length, end, entity_type, value, canary_repetitions))
        return self.add(value)

    def embed(self, text: str, spans: list[Span]) -> Text:
        """Append an already built text (a quoted message) with its spans shifted into place."""
        shift = self.length
        self.spans.extend(
            Span(s.start + shift, s.end + shift, s.entity_type, s.value, s.canary_repetitions) for s in spans
        )
        return self.add(text)

    def person(self, p, display: bool) -> Text:
        """A person as a mail client shows them: internal "First Last", external with the address."""
        self.pii("PERSON", p.full)
        if display and not p.internal:
            self.add(" <").pii("EMAIL_ADDRESS", p.email).add(">")
        return self

    def join(self, people: list, sep: str, as_email: bool = False, display: bool = False) -> Text:
        for i, p in enumerate(people):
            if i:
                self.add(sep)
            if as_email:
                self.pii("EMAIL_ADDRESS", p.email)
            else:
                self.person(p, display)
        return self

    def render(self) -> tuple[str, list[Span]]:
        return "".join(self.parts), list(self.spans)
