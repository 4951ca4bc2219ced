"""Ask as an identity: the one path of a question, whatever the channel (the chat page, the Help panel, the API, batch).

A channel knows who is asking (the signed-in person, an API key or the person
a key acts for, the operator running a batch) and hands :class:`ChatService`
an :class:`~service.access.Identity`. Everything that must be the same on
every channel is done here, once:

- the person's stored user (created on first use, kept up to date) owns every
  conversation they read or write, and nobody reads another's;
- answers and searches use only the documents their audiences may read;
- the rollout features they get choose the assistant that answers, and are
  recorded with the answer;
- every message records the channel it came through;
- the question is stored before anything else happens, then a pending answer
  that is streamed and closed whatever happens (:mod:`service.turns`).

No Streamlit and no FastAPI here: :mod:`ui.web` binds the signed-in person,
:mod:`api` the key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from assistant.text import clean
from feedback import review, store
from feedback.models import Conversation, Message, Rating, User, utcnow
from service.access import Identity
from service.history import ANSWERED, Turn, history_before, turns
from service.rollout import features_for
from service.turns import Backoff, Outcome, answer_turn

log = logging.getLogger(__name__)

ASSISTANT_KIND = "assistant"
SUPPORT_KIND = "support"
#: Answers pending longer than this are closed as ``interrupted``: the process writing them is gone (a turn gives
#: up on the model after ``retry_budget_s``; streaming a long answer takes a minute or two).
STALE_ANSWER_AGE = timedelta(minutes=10)

Writer = Callable[[Iterable[str]], object]


class QuestionRefused(store.InvalidInput):
    """The question cannot be sent as it is (empty, or longer than the limit); nothing was stored."""


@dataclass(frozen=True)
class Asked:
    """A question asked and answered: where it is stored, and how its answer ended (``outcome.message``)."""

    conversation_id: str
    question: Message
    outcome: Outcome


class ChatService:
    """Conversations, questions, answers, ratings, problem reports and searches, each as a given identity.

    ``assistant_for(features)`` returns the assistant for those rollout
    features (one per answering configuration, shared); ``support()`` the
    support desk (:class:`service.support.SupportDesk`), or ``None`` when the
    in-app help is off.
    """

    def __init__(self, *, engine: Engine, settings, assistant_for: Callable[[list[str]], object],
                 support: Callable[[], object | None] | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.assistant_for = assistant_for
        self.support = support or (lambda: None)

    # -- who ----------------------------------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A database session whose objects stay readable after it closes (callers render them afterwards)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def user(self, session: Session, who: Identity) -> User:
        """The stored user of ``who`` (created on first use, kept up to date)."""
        return store.get_or_create_user(session=session, subject=who.subject, email=who.email, name=who.name,
                                        groups=sorted(who.groups), team=who.team)

    def features(self, who: Identity) -> list[str]:
        """The rollout features on for ``who``."""
        return features_for(who, self.settings.rollout)

    @staticmethod
    def where(who: Identity) -> dict:
        """Only the documents ``who``'s audiences may read."""
        return {"audience": sorted(who.audiences)}

    # -- conversations ------------------------------------------------------------------------------------------

    def conversations(self, who: Identity, *, kind: str | None = ASSISTANT_KIND, limit: int = 100) -> list[Conversation]:
        """``who``'s conversations of ``kind`` (``None``: every kind), newest first."""
        with self.session() as session:
            return store.list_conversations(session=session, user=self.user(session, who), kind=kind, limit=limit)

    def conversation(self, who: Identity, conversation_id: str, *,
                     kind: str | None = ASSISTANT_KIND) -> tuple[Conversation, list[Turn]]:
        """``who``'s conversation and its turns; :class:`~feedback.store.NotFound` for anyone else's, a deleted
        one, or one of another kind (a Help conversation's id where a chat is expected)."""
        with self.session() as session:
            return self._open(session, self.user(session, who), conversation_id, kind)

    def overview(self, who: Identity, conversation_id: str | None = None, *, kind: str = ASSISTANT_KIND,
                 limit: int = 100) -> tuple[User, list[Conversation], Conversation | None, list[Turn]]:
        """What a chat screen shows, in one read: ``who``'s user, their conversations of ``kind`` (newest first),
        and the open one with its turns (``None`` and no turns if it is not theirs, deleted, or of another kind)."""
        with self.session() as session:
            user = self.user(session, who)
            conversations = store.list_conversations(session=session, user=user, kind=kind, limit=limit)
            conversation, shown = None, []
            if conversation_id:
                try:
                    conversation, shown = self._open(session, user, conversation_id, kind)
                except store.NotFound:
                    pass
            return user, conversations, conversation, shown

    def latest(self, who: Identity, *, kind: str) -> tuple[str | None, list[Turn]]:
        """``who``'s latest conversation of ``kind`` and its turns (none yet: ``(None, [])``)."""
        with self.session() as session:
            user = self.user(session, who)
            found = store.list_conversations(session=session, user=user, kind=kind, limit=1)
            if not found:
                return None, []
            return found[0].id, turns(self._history(session, user, found[0].id))

    def new_conversation(self, who: Identity, *, kind: str = ASSISTANT_KIND) -> str:
        with self.session() as session:
            return store.create_conversation(session=session, user=self.user(session, who), kind=kind).id

    def rename(self, who: Identity, conversation_id: str, title: str) -> Conversation:
        with self.session() as session:
            return store.rename_conversation(session=session, user=self.user(session, who),
                                             conversation_id=conversation_id, title=title)

    def delete(self, who: Identity, conversation_id: str) -> Conversation:
        with self.session() as session:
            return store.delete_conversation(session=session, user=self.user(session, who),
                                             conversation_id=conversation_id)

    def export(self, who: Identity, conversation_id: str) -> dict:
        """``who``'s own conversation as plain data, for download (another's is refused by the store)."""
        with self.session() as session:
            return store.conversation_export(session=session, user=self.user(session, who),
                                             conversation_id=conversation_id)

    def close_stale_answers(self) -> int:
        """Close the answers left pending by a process that died (at start); how many."""
        with self.session() as session:
            closed = store.interrupt_stale_answers(session=session, older_than=STALE_ANSWER_AGE)
        if closed:
            log.warning("closed %d answer(s) left pending by an earlier run as interrupted", closed)
        return closed

    def _open(self, session: Session, user: User, conversation_id: str,
              kind: str | None) -> tuple[Conversation, list[Turn]]:
        """``user``'s conversation of ``kind`` (``None``: any) and its turns; :class:`~feedback.store.NotFound`
        for anyone else's, a deleted one, or one of another kind."""
        conversation = store.get_conversation(session=session, user=user, conversation_id=conversation_id)
        if kind is not None and conversation.kind != kind:
            raise store.NotFound(conversation_id)
        return conversation, turns(self._history(session, user, conversation_id))

    def _history(self, session: Session, user: User, conversation_id: str) -> list[store.HistoryEntry]:
        """The conversation's history, its answers pending for too long closed first: a crash cut them off.

        The start closes them everywhere, but only those old enough then: a process restarted within
        ``STALE_ANSWER_AGE`` of the crash leaves the rest to this. Written only when one is found.
        """
        entries = store.history(session=session, user=user, conversation_id=conversation_id)
        cutoff = utcnow() - STALE_ANSWER_AGE
        if not any(e.message.status == "pending" and e.message.created_at < cutoff for e in entries):
            return entries
        store.interrupt_stale_answers(session=session, older_than=STALE_ANSWER_AGE, conversation_id=conversation_id)
        log.warning("closed the answers left pending in conversation %s as interrupted", conversation_id)
        session.expire_all()  # the session keeps what it read (expire_on_commit=False): read the closed answers again
        return store.history(session=session, user=user, conversation_id=conversation_id)

    # -- asking -------------------------------------------------------------------------------------------------

    def check(self, text: str | None) -> str | None:
        """Why ``text`` cannot be sent as a question, or ``None`` if it can (empty text cannot)."""
        limit = self.settings.chat.max_message_chars
        if text is None or not text.strip():
            return "The question is empty."
        if len(text) > limit:
            return f"The question is {len(text):,} characters long; the limit is {limit:,}. It was not sent: shorten it."
        return None

    def store_question(self, who: Identity, text: str, *, conversation_id: str | None = None,
                       kind: str = ASSISTANT_KIND, channel: str = "web", key: str | None = None) -> Message:
        """Store the question (cleaned) before anything is done with it, in a new conversation if there is none
        (or if ``conversation_id`` was deleted meanwhile, in another tab). ``key`` makes sending the same question
        again store it once (a retry after a lost commit acknowledgement). :class:`QuestionRefused` if it
        cannot be sent; nothing is stored then."""
        if why := self.check(text):
            raise QuestionRefused(why)
        with self.session() as session:
            user = self.user(session, who)
            if conversation_id:
                try:
                    store.get_conversation(session=session, user=user, conversation_id=conversation_id)
                except store.NotFound:
                    conversation_id = None
            return self._add_question(session, user, text, conversation_id, kind, channel, key)

    @staticmethod
    def _add_question(session: Session, user: User, text: str, conversation_id: str | None, kind: str, channel: str,
                      key: str | None) -> Message:
        if conversation_id:
            return store.add_user_message(session=session, user=user, conversation_id=conversation_id,
                                          content=text, client_key=key, channel=channel)
        # The conversation and its first question in one transaction: a failure leaves no empty conversation.
        return store.start_conversation(session=session, user=user, content=text, kind=kind, client_key=key,
                                        channel=channel)

    def answer(self, who: Identity, question: Message, *, history: list[tuple[str, str]],
               write: Writer | None = None, status: Callable[[str | None], object] | None = None,
               backoff: Backoff | None = None) -> Outcome:
        """Answer a stored question of ``who``'s: see :func:`service.turns.answer_turn`.

        A Help question (kind ``support``) is answered by the support desk, any other by the assistant
        ``who``'s rollout features choose; both from the documents ``who`` may read. ``write`` receives the
        answer's text as it is produced (default: it is only stored).
        """
        if question.kind == SUPPORT_KIND:
            features: list[str] = []

            def assistant():
                desk = self.support()
                if desk is None:
                    raise store.InvalidInput("The in-app help is turned off.")
                return desk.assistant
        else:
            features = self.features(who)

            def assistant():
                return self.assistant_for(features)

        return answer_turn(engine=self.engine, assistant=assistant, question=question, history=history,
                           write=write or _drain, where=self.where(who), features=features, status=status,
                           backoff=backoff)

    def ask(self, who: Identity, text: str, *, conversation_id: str | None = None, kind: str = ASSISTANT_KIND,
            channel: str, key: str | None = None, write: Writer | None = None,
            status: Callable[[str | None], object] | None = None) -> Asked:
        """Store ``text`` as ``who``'s question (in ``conversation_id``, which must be theirs and of ``kind``:
        :class:`~feedback.store.NotFound` otherwise, and nothing is stored; or in a new conversation) and answer
        it, with the conversation so far as its history. The question is stored in the same database session
        that checks the conversation and reads its history. Sent again with the same ``key`` after it was
        answered (a client that lost the reply, a batch resumed after a kill), the stored answer is returned and
        nothing new is written."""
        if why := self.check(text):
            raise QuestionRefused(why)
        history: list[tuple[str, str]] = []
        with self.session() as session:
            user = self.user(session, who)
            if conversation_id:
                history = history_before(self._open(session, user, conversation_id, kind)[1])
            question = self._add_question(session, user, text, conversation_id, kind, channel, key)
            earlier = self._answered_before(session, question) if key else None
        if earlier is not None:  # the same question sent again (a retry whose reply was lost): not answered twice
            log.info("question %s was sent again; returning its answer %s", question.id, earlier.id)
            return Asked(question.conversation_id, question,
                         Outcome(earlier.id, earlier.status, notice=earlier.error, message=earlier))
        outcome = self.answer(who, question, history=history, write=write, status=status)
        return Asked(question.conversation_id, question, outcome)

    @staticmethod
    def _answered_before(session: Session, question: Message) -> Message | None:
        """The finished answer a question already has (it was stored before, under the same key), if any."""
        return session.exec(select(Message).where(Message.reply_to == question.id, Message.status.in_(ANSWERED))
                            .order_by(Message.id.desc())).first()

    # -- ratings and problem reports -----------------------------------------------------------------------------

    def rate(self, who: Identity, message_id: int, thumb: int, reasons: Iterable[str] = (),
             comment: str | None = None) -> Rating:
        with self.session() as session:
            return store.rate(session=session, user=self.user(session, who), message_id=message_id, thumb=thumb,
                              reasons=reasons, comment=comment, allowed_reasons=self.settings.chat.feedback_reasons)

    def withdraw_rating(self, who: Identity, message_id: int) -> bool:
        with self.session() as session:
            return store.withdraw_rating(session=session, user=self.user(session, who), message_id=message_id)

    def report_problem(self, who: Identity, text: str, *, page: str, conversation_id: str | None = None,
                       message_id: int | None = None) -> int:
        """File a problem report for ``who``; returns its number."""
        with self.session() as session:
            return review.report_problem(session=session, user=self.user(session, who), text=clean(text), page=page,
                                         conversation_id=conversation_id, message_id=message_id).id

    # -- search ---------------------------------------------------------------------------------------------------

    def search(self, who: Identity, query: str, *, k: int | None = None):
        """The ``k`` passages ``who`` may read that best match ``query``, with the band they would be answered in
        (a :class:`~assistant.retrieval.Retrieval`; no answer is written, nothing is stored)."""
        if why := self.check(query):
            raise QuestionRefused(why.replace("question", "query"))
        knowledge_base = self.assistant_for(self.features(who)).knowledge_base
        return knowledge_base.retrieve(query, k=k, where=self.where(who))


def _drain(deltas: Iterable[str]) -> None:
    for _ in deltas:
        pass
