"""A stored conversation as turns: each question with the answers given to it, and what the assistant is told.

A *turn* is one question and its answer(s): regenerating adds an answer to the
same question, and a page shows one of them (the latest, unless an earlier one
was picked). Every channel reads a conversation this way, and the history sent
to the assistant with a follow-up is built from the turns as shown, so a
follow-up builds on the answer the person saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from feedback import store
from feedback.models import Message, Rating

#: Statuses of an answer that can be rated and is worth sending back to the assistant as history.
ANSWERED = ("complete", "abstained")


@dataclass(frozen=True)
class Turn:
    """A question with the answer shown: its latest unless an earlier one was picked (``showing``)."""

    question: Message
    answer: Message | None = None
    rating: Rating | None = None
    #: Every answer given to the question, oldest first, each with its rating (regenerating adds one).
    answers: tuple[tuple[Message, Rating | None], ...] = ()

    @property
    def attempts(self) -> int:
        return len(self.answers)

    @property
    def shown(self) -> int:
        """Which answer is shown, from 1; 0 when there is none."""
        return next((i for i, (m, _) in enumerate(self.answers, 1) if m is self.answer), 0)

    def showing(self, attempt: int | None) -> Turn:
        """This turn with its ``attempt``-th answer shown (from 1; out of range or ``None``: the latest)."""
        if not self.answers:
            return self
        answer, rating = self.answers[attempt - 1] if attempt and 1 <= attempt <= len(self.answers) else self.answers[-1]
        return replace(self, answer=answer, rating=rating)


def turns(entries: Iterable[store.HistoryEntry]) -> list[Turn]:
    """Group a conversation's messages into questions, each with its latest answer."""
    result: list[Turn] = []
    by_question: dict[int, int] = {}
    for entry in entries:
        message = entry.message
        if message.role == "user":
            by_question[message.id] = len(result)
            result.append(Turn(question=message))
        elif message.reply_to in by_question:
            index = by_question[message.reply_to]
            previous = result[index]
            result[index] = Turn(previous.question, message, entry.rating, (*previous.answers, (message, entry.rating)))
    return result


def history_before(shown: list[Turn], question_id: int | None = None) -> list[tuple[str, str]]:
    """The answered turns before ``question_id`` (all of them if ``None``), as the assistant takes them."""
    pairs: list[tuple[str, str]] = []
    for turn in shown:
        if turn.question.id == question_id:
            break
        if turn.answer is not None and turn.answer.status in ANSWERED and turn.answer.content:
            pairs += [("user", turn.question.content), ("assistant", turn.answer.content)]
    return pairs
