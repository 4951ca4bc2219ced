"""The REST API through a real server (uvicorn on 127.0.0.1, httpx), on SQLite and PostgreSQL.

The handbook is indexed once per module with the real local embedding model;
each test gets its own copy, its own database and its own server.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from helpers_kb import HANDBOOK, indexed_folder
from helpers_net import serving_asgi
from openapi_spec_validator import validate
from sqlalchemy import event
from sqlmodel import Session, select

from api.app import standalone
from feedback import keys
from feedback.models import ApiKey, Message, Ticket, User, utcnow
from onboard import factories
from onboard.settings import Settings

VACATION = "How many days of paid vacation do I get?"
#: A page whose front matter link is not a web address: no channel may hand it on.
PARKING = """
    ---
    title: Parking
    url: javascript:alert(document.cookie)
    ---
    # Parking

    The garage under the office has forty bicycle racks and twelve car spaces, booked in the facilities app.
"""
SALARY = "What does the quokka matrix list about salary bands?"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, local_embeddings) -> Path:
    """A data folder with the small test handbook indexed (hr/salary.md is for the hr audience only)."""
    return indexed_folder(tmp_path_factory.mktemp("api-index"), {**HANDBOOK, "parking.md": PARKING}, local_embeddings)


class Server:
    """The API's address, its database, and a way to make keys."""

    def __init__(self, url: str, engine, settings, service) -> None:
        self.url, self.engine, self.settings, self.service = f"{url}/api/v1", engine, settings, service

    def key(self, *, groups=(), team="integrations", **options) -> str:
        with Session(self.engine) as session:
            _, secret = keys.create_key(session, name="test bot", team=team, groups=list(groups), **options)
        return secret

    def client(self, secret: str | None = None, **headers) -> httpx.Client:
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def messages(self) -> list[Message]:
        with Session(self.engine) as session:
            return list(session.exec(select(Message).order_by(Message.id)).all())


@pytest.fixture
def server(indexed, database_url, tmp_path, local_embeddings):
    data = tmp_path / "served"
    shutil.copytree(indexed, data, ignore=shutil.ignore_patterns("*.db", "*.lock", "models"))
    settings = Settings(data_dir=data, database_url=database_url, support={"enabled": False})
    engine = factories.make_engine(settings, migrate=True)
    knowledge_base = factories.make_knowledge_base(settings, embeddings=local_embeddings)
    service = factories.make_chat_service(settings, knowledge_base=knowledge_base, engine=engine)
    with serving_asgi(standalone(settings, service=lambda: service)) as url:
        yield Server(url, engine, settings, service)
    engine.dispose()


def test_ask_rate_list_read_and_delete(server):
    client = server.client(server.key())
    asked = client.post("/ask", json={"question": VACATION})
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert "twenty days" in body["answer"] and body["band"] == "answered" and body["abstained"] is False
    assert [c["source"] for c in body["citations"]][:1] == ["time-off.md"]
    assert body["citations"][0]["n"] == 1 and f"[{body['citations'][0]['n']}]" in body["answer"]
    question, answer = server.messages()
    assert (question.channel, answer.channel) == ("api", "api")
    assert (answer.id, answer.content, answer.team) == (body["message_id"], body["answer"], "integrations")

    follow = client.post("/ask", json={"question": "and sick leave?", "conversation_id": body["conversation_id"]})
    assert follow.status_code == 200 and follow.json()["conversation_id"] == body["conversation_id"]
    assert "unlimited" in follow.json()["answer"].lower()  # answered from the conversation

    rated = client.post(f"/messages/{body['message_id']}/rating", json={"thumb": "down", "comment": "too long"})
    assert rated.status_code == 200 and rated.json()["thumb"] == "down"
    listed = client.get("/conversations").json()
    assert [c["id"] for c in listed] == [body["conversation_id"]]
    newer = client.post("/ask", json={"question": "Who do I ask about my laptop?"}).json()["conversation_id"]
    assert [c["id"] for c in client.get("/conversations", params={"limit": 1}).json()] == [newer]
    assert client.get("/conversations", params={"limit": 0}).status_code == 422
    assert client.delete(f"/conversations/{newer}").status_code == 204
    read = client.get(f"/conversations/{body['conversation_id']}").json()
    assert [m["role"] for m in read["messages"]] == ["user", "assistant", "user", "assistant"]
    assert read["messages"][1]["thumb"] == "down" and read["messages"][0]["content"] == VACATION

    other = server.client(server.key())  # another key is another caller: it sees none of this
    assert other.get(f"/conversations/{body['conversation_id']}").status_code == 404
    assert other.post(f"/messages/{body['message_id']}/rating", json={"thumb": "up"}).status_code == 404
    assert other.get("/conversations").json() == []

    assert client.delete(f"/conversations/{body['conversation_id']}").status_code == 204
    assert client.get(f"/conversations/{body['conversation_id']}").status_code == 404
    assert client.get("/conversations").json() == []


def test_a_streamed_answer_comes_as_text_events_then_the_stored_answer(server):
    client = server.client(server.key())
    events = []
    with client.stream("POST", "/ask", json={"question": VACATION, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    names = [name for name, _ in events]
    assert names[-1] == "answer" and set(names[:-1]) == {"delta"} and len(names) >= 2
    final = events[-1][1]
    assert "".join(data["text"] for name, data in events[:-1]) == final["answer"]
    assert server.messages()[-1].content == final["answer"] and final["message_id"] == server.messages()[-1].id


def test_revoked_and_expired_keys_get_401(server):
    revoked, expired, good = server.key(), server.key(), server.key()
    with Session(server.engine) as session:
        keys.revoke_key(session, session.exec(select(ApiKey).order_by(ApiKey.id)).first().id)
        late = session.exec(select(ApiKey).order_by(ApiKey.id.desc())).all()[1]
        late.expires_at = utcnow() - timedelta(seconds=1)
        session.add(late)
        session.commit()
    for secret in (revoked, expired, "onb_not-a-key", None):
        response = server.client(secret).post("/ask", json={"question": VACATION})
        assert response.status_code == 401, (secret, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401 and "Traceback" not in response.text
    assert server.client(good).get("/conversations").status_code == 200
    assert server.messages() == []  # nothing was asked


def test_a_key_without_the_hr_group_never_receives_an_hr_passage(server):
    staff, hr = server.client(server.key(groups=["engineering"])), server.client(server.key(groups=["hr"]))
    for client, sees in ((staff, False), (hr, True)):
        answer = client.post("/ask", json={"question": SALARY}).json()
        sources = [c["source"] for c in answer["citations"] + answer["closest"]]
        found = client.post("/search", json={"query": SALARY, "k": 10}).json()["passages"]
        assert ("hr/salary.md" in sources) is sees and ("quokka" in answer["answer"]) is sees
        assert ("hr/salary.md" in [p["source"] for p in found]) is sees
        assert all("quokka" not in p["text"] for p in found) or sees


def test_the_rate_limit_returns_429_then_recovers(server, monkeypatch):
    from feedback import limits

    client = server.client(server.key(rate_per_minute=3))
    codes = [client.get("/conversations").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = client.get("/conversations")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["detail"].startswith("Too many requests")
    later = utcnow() + timedelta(seconds=61)
    monkeypatch.setattr(limits, "utcnow", lambda: later)  # the server runs in this process: a minute passes
    assert client.get("/conversations").status_code == 200


def test_bad_requests_get_422_and_store_nothing(server):
    client = server.client(server.key())
    too_long = "x" * (server.settings.chat.max_message_chars + 1)
    for content, sent in (("not json", {"content": b"{not json"}), ("empty", {"json": {"question": "   "}}),
                          ("too long", {"json": {"question": too_long}}), ("missing", {"json": {}}),
                          ("unknown field", {"json": {"question": VACATION, "qestion": 1}})):
        response = client.post("/ask", headers={"content-type": "application/json"}, **sent)
        assert response.status_code == 422, (content, response.text)
        assert response.headers["content-type"] == "application/problem+json" and response.json()["detail"]
    huge = client.post("/ask", json={"question": "y" * (server.settings.api.max_body_bytes + 10)})
    assert huge.status_code == 413 and huge.json()["status"] == 413
    assert client.get("/conversations/nope").status_code == 404
    assert client.post("/ask", json={"question": VACATION, "conversation_id": "nope"}).status_code == 404
    assert server.messages() == []


def test_on_behalf_of_a_person_needs_the_scope_and_stores_per_person(server):
    plain, bot = server.key(), server.key(on_behalf=True)
    refused = server.client(plain, **{"X-On-Behalf-Of": "ana@example.com"}).post("/ask", json={"question": VACATION})
    assert refused.status_code == 403
    ana = server.client(bot, **{"X-On-Behalf-Of": "Ana@Example.com"})
    ben = server.client(bot, **{"X-On-Behalf-Of": "ben@example.com"})
    asked = ana.post("/ask", json={"question": VACATION}).json()
    assert [c["id"] for c in ana.get("/conversations").json()] == [asked["conversation_id"]]
    assert ben.get("/conversations").json() == [] and server.client(bot).get("/conversations").json() == []
    assert server.client(bot, **{"X-On-Behalf-Of": "not an address"}).get("/conversations").status_code == 422
    with Session(server.engine) as session:
        owner = session.get(User, server.messages()[0].user_id)
    with Session(server.engine) as session:
        bot_id = session.exec(select(ApiKey).where(ApiKey.on_behalf)).one().id
    assert (owner.subject, owner.email, owner.team) == (f"apikey:{bot_id}:person:ana@example.com", "ana@example.com",
                                                        "integrations")


def test_problems_health_ready_and_the_openapi_document(server):
    client = server.client(server.key())
    asked = client.post("/ask", json={"question": VACATION}).json()
    filed = client.post("/problems", json={"text": "The answer is out of date", "message_id": asked["message_id"]})
    assert filed.status_code == 201
    with Session(server.engine) as session:
        ticket = session.get(Ticket, filed.json()["id"])
    assert (ticket.page, ticket.message_id, ticket.text) == ("api", asked["message_id"], "The answer is out of date")
    anonymous = server.client()
    assert anonymous.get("/health").json()["status"] == "ok"
    ready = anonymous.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "index": "ok"}
    document = anonymous.get("/openapi.json").json()
    validate(document)  # raises when the document is not valid OpenAPI
    assert {"/ask", "/search", "/conversations", "/conversations/{conversation_id}", "/problems",
            "/messages/{message_id}/rating", "/health", "/ready"} <= set(document["paths"])
    assert anonymous.get("/docs").status_code == 200


def test_the_pages_and_the_api_of_one_process_share_one_knowledge_base(indexed, tmp_path):
    """One embedding model and keyword index in memory per process, whoever asks first (pages or API)."""
    import gc

    shutil.copytree(indexed, tmp_path / "one", ignore=shutil.ignore_patterns("*.lock", "models"))
    one = Settings(data_dir=tmp_path / "one", support={"enabled": False})
    first = factories.shared_knowledge_base(one)
    service = factories.make_chat_service(one)
    assert service.assistant_for([]).knowledge_base is first
    assert factories.shared_knowledge_base(Settings(data_dir=tmp_path / "one", support={"enabled": False})) is first
    other = one.model_copy(update={"retrieval": one.retrieval.model_copy(update={"k": 3})})
    assert factories.shared_knowledge_base(other) is not first  # other settings, another knowledge base
    del first, service
    gc.collect()
    assert factories._OPEN.get(one.model_dump_json()) is None  # closed once nobody uses it


def test_keys_acting_for_the_same_person_do_not_read_each_other(server):
    """What an hr key stored for a person is not readable through another key naming the same person."""
    hr_bot, plain_bot = server.key(groups=["hr"], on_behalf=True), server.key(on_behalf=True)
    as_ana_hr = server.client(hr_bot, **{"X-On-Behalf-Of": "ana@example.com"})
    as_ana = server.client(plain_bot, **{"X-On-Behalf-Of": "Ana@example.com"})
    asked = as_ana_hr.post("/ask", json={"question": SALARY}).json()
    assert "quokka" in asked["answer"]
    assert as_ana.get("/conversations").json() == []
    assert as_ana.get(f"/conversations/{asked['conversation_id']}").status_code == 404
    follow = as_ana.post("/ask", json={"question": "and who reviews them?", "conversation_id": asked["conversation_id"]})
    assert follow.status_code == 404
    assert as_ana.post(f"/messages/{asked['message_id']}/rating", json={"thumb": "up"}).status_code == 404


class DatabaseDown:
    """The server's database refusing new connections, as during a restart."""

    def __init__(self, engine) -> None:
        self.engine = engine

    @staticmethod
    def _refuse(dialect, record, cargs, cparams):
        raise dialect.loaded_dbapi.OperationalError("the database is restarting")

    def __enter__(self):
        self.engine.dispose()
        event.listen(self.engine, "do_connect", self._refuse)

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "do_connect", self._refuse)


def test_a_database_outage_is_a_503_with_retry_after_and_recovers(server):
    client = server.client(server.key())
    with DatabaseDown(server.engine):
        for response in (client.post("/ask", json={"question": VACATION}), client.get("/conversations"),
                         server.client().get("/ready")):
            assert response.status_code == 503, response.text
            assert "Traceback" not in response.text
        assert client.get("/conversations").headers["Retry-After"] == "5"
    assert client.post("/ask", json={"question": VACATION}).status_code == 200


def test_a_document_link_that_is_not_a_web_address_is_never_handed_on(server):
    client = server.client(server.key())
    question = "How many bicycle racks does the garage have?"
    asked = client.post("/ask", json={"question": question}).json()
    found = client.post("/search", json={"query": question}).json()["passages"]
    parking = [c for c in asked["citations"] + asked["closest"] if c["source"] == "parking.md"]
    parking += [p for p in found if p["source"] == "parking.md"]
    assert parking and all(p["url"] is None for p in parking)  # found, and its javascript: link dropped
    kitchen = client.post("/search", json={"query": "free coffee in the office kitchen"}).json()["passages"]
    assert "https://handbook.example.com/kitchen" in [p["url"] for p in kitchen]  # a web address is kept


def test_edge_requests_get_clear_answers(server):
    client = server.client(server.key())
    assert client.post("/messages/99999999999999999999999/rating", json={"thumb": "up"}).status_code == 422
    assert client.post("/messages/2147483648/rating", json={"thumb": "up"}).status_code == 422
    assert client.post("/problems", json={"text": "x", "message_id": 99999999999999999999}).status_code == 422
    garbled = client.post("/ask", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert garbled.status_code == 422 and garbled.json()["detail"] == "The request body is not valid JSON."
    with client.stream("POST", "/ask", json={"question": VACATION, "stream": True}) as streamed:
        assert streamed.status_code == 200 and "RateLimit-Remaining" in streamed.headers
        conversation_id = None
        for line in streamed.iter_lines():
            if line.startswith("data: ") and "conversation_id" in line:
                conversation_id = json.loads(line[len("data: "):])["conversation_id"]
    deleted = client.delete(f"/conversations/{conversation_id}")
    assert deleted.status_code == 204 and "RateLimit-Remaining" in deleted.headers
    assert server.messages() and all(m.id <= 2 for m in server.messages())  # nothing stored by the bad requests


def test_a_question_sent_again_with_its_key_is_answered_once(server):
    """A client (or a resumed batch) that lost the reply sends the question again: the stored answer comes back."""
    from service.access import Identity

    who = Identity(subject="batch:ops", email="", name="Batch (ops)", groups=frozenset(), roles=frozenset(),
                   team="ops")
    first = server.service.ask(who, VACATION, channel="batch", key="batch:row-1")
    again = server.service.ask(who, VACATION, channel="batch", key="batch:row-1")
    other = server.service.ask(who, VACATION, channel="batch", key="batch:row-2")
    assert again.question.id == first.question.id and again.outcome.answer_id == first.outcome.answer_id
    assert again.outcome.message.content == first.outcome.message.content and again.outcome.status == "complete"
    assert other.outcome.answer_id != first.outcome.answer_id  # another key is another question
    assert [m.role for m in server.messages()] == ["user", "assistant", "user", "assistant"]
