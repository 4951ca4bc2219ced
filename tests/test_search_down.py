"""A Chroma server that goes down: the turn says the search is unavailable, in one log line (issue #17).

A real ``chroma run`` server (as in ``test_chroma_server.py``) serves the index
for a first answer, then is stopped: the next turn must end ``failed`` with
the app's own search-unavailable sentence, not "Something went wrong", and
log it once.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from helpers_kb import HANDBOOK, write_docs
from helpers_net import free_port, running
from sqlmodel import Session
from test_chroma_server import STARTUP_TIMEOUT_S, chroma_binary

from assistant.answering import AnswerConfig, Assistant
from assistant.errors import SearchUnavailable, search_unreachable
from assistant.ingest import ingest
from assistant.retrieval import KnowledgeBase
from assistant.vectors import ChromaLocation, PassageStore, make_client
from feedback import store
from feedback.models import Message
from service import turns

pytestmark = pytest.mark.server


def test_a_stopped_chroma_server_gives_the_search_unavailable_sentence_logged_once(
        tmp_path, fake_embeddings, sqlite_engine, caplog):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [chroma_binary(), "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port",
               str(port)]
    with Session(sqlite_engine, expire_on_commit=False) as session:
        user = store.get_or_create_user(session=session, subject="alice")
        question = store.start_conversation(session=session, user=user, content="report broken laptop hardware")

    def turn():
        return turns.answer_turn(engine=sqlite_engine, assistant=lambda: bot, question=question, history=[],
                                 write=lambda deltas: "".join(deltas))

    with running(command, health_url=f"{url}/api/v2/heartbeat", log_path=tmp_path / "chroma.log", name="chroma",
                 timeout_s=STARTUP_TIMEOUT_S):
        passages = PassageStore(make_client(ChromaLocation(url=url)), "handbook", fake_embeddings.model_id)
        ingest([write_docs(tmp_path / "handbook", HANDBOOK)], store=passages, embeddings=fake_embeddings,
               engine=sqlite_engine)
        bot = Assistant(knowledge_base=KnowledgeBase(passages, fake_embeddings), config=AnswerConfig())
        assert turn().status == "complete"
    # The server is stopped now.
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="onboard"), caplog.at_level(logging.DEBUG, logger="assistant"):
        outcome = turn()
    assert (outcome.status, outcome.error) == ("failed", turns.SEARCH_UNAVAILABLE)
    with Session(sqlite_engine) as session:
        assert session.get(Message, outcome.answer_id).error == turns.SEARCH_UNAVAILABLE
    told = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(told) == 1 and "search is unavailable" in told[0].getMessage(), [r.getMessage() for r in told]
    assert sum(1 for r in caplog.records if r.exc_info) <= 1  # a traceback once at most


def test_what_counts_as_an_unreachable_search():
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    try:
        try:
            raise refused
        except httpx.ConnectError as exc:
            raise RuntimeError("query failed") from exc
    except RuntimeError as wrapped:
        assert search_unreachable(wrapped)
    assert search_unreachable(SearchUnavailable("down"))
    assert search_unreachable(ValueError("Could not connect to a Chroma server. Are you sure it is running?"))
    assert not search_unreachable(ValueError("bad filter"))
    assert not search_unreachable(RuntimeError("boom"))
    import openai

    model_down = openai.APIConnectionError(request=httpx.Request("POST", "http://model.example/v1"))
    model_down.__cause__ = refused
    assert not search_unreachable(model_down)  # the model's endpoint, not the search
