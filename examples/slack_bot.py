"""A Slack slash command (``/ask <question>``) answered by the onboarding assistant, through its REST API only.

Slack's signature (HMAC-SHA256 of ``v0:timestamp:body``) is checked, Slack is acknowledged at once, and the answer
goes to ``response_url``. The asker's e-mail (``users.info``; bot scopes ``users:read``, ``users:read.email``) is sent
as ``X-On-Behalf-Of``, so each person's answers are stored as theirs (a key made with ``--on-behalf``). The answer is
mrkdwn with ``&``, ``<``, ``>`` escaped, in a ``verbatim`` text object, with a word joiner in ``://``, before ``@``
and inside dotted words: no link or mention from a document becomes live.
"""

import hashlib
import hmac
import html
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx

UNLINK = re.compile(r"(?<=:)(?=//)|(?<=\w)(?=\.\w)|(?=@)")
conversations: dict[str, tuple[str, float]] = {}  # Slack user + channel: the API conversation, when last used


def verified(secret: str, headers, body: bytes) -> bool:
    """Whether Slack signed this request (and signed it in the last five minutes)."""
    stamp = headers.get("X-Slack-Request-Timestamp", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
        return False
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v0={mac}", headers.get("X-Slack-Signature", ""))


def slack_text(text: str) -> str:
    return UNLINK.sub("\u2060", text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def message(text: str) -> dict:  # ephemeral: only the asker sees it
    block = {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000], "verbatim": True}}
    return {"response_type": "ephemeral", "text": "Answer from the handbook", "blocks": [block]}


def answer(env: dict, form: dict) -> dict:
    """The reply to one ``/ask``: the person's e-mail from Slack, the question through the API, the answer."""
    slack = httpx.get(f"{env.get('SLACK_API_URL', 'https://slack.com/api')}/users.info", params={"user": form["user_id"]},
                      headers={"Authorization": f"Bearer {env['SLACK_BOT_TOKEN']}"}, timeout=10).json()
    email = (slack.get("user") or {}).get("profile", {}).get("email")
    if not email:
        return message("Sorry, I could not read your e-mail address from Slack, so I cannot answer as you.")
    thread = f"{form['user_id']}/{form.get('channel_id', '')}"
    body = {"question": html.unescape(form.get("text", ""))}  # Slack sends &, < and > as entities
    if thread in conversations and time.time() - conversations[thread][1] < 1800:
        body["conversation_id"] = conversations[thread][0]  # a follow-up within 30 minutes
    asked = httpx.post(f"{env['ONBOARD_API_URL']}/ask", json=body, timeout=120,
                       headers={"Authorization": f"Bearer {env['ONBOARD_API_KEY']}", "X-On-Behalf-Of": email})
    if asked.status_code == 404 and conversations.pop(thread, None):  # the conversation was deleted: a new one
        return answer(env, form)
    if asked.status_code != 200:
        return message(slack_text(f"Sorry, no answer: {asked.json().get('detail', asked.status_code)}"))
    reply = asked.json()
    conversations[thread] = reply["conversation_id"], time.time()
    sources = [slack_text(f"[{c['n']}] {c['title']}" + (f" — {c['section']}" if c["section"] else "")
                          + f" ({c['source']})") for c in reply["citations"]]
    return message("\n".join([slack_text(reply["answer"]), *(["*Sources*", *sources] if sources else [])]))


def respond(env: dict, form: dict) -> None:
    try:
        payload = answer(env, form)
    except (httpx.HTTPError, ValueError, KeyError):
        payload = message("Sorry, the assistant is not reachable right now. Try again in a moment.")
    httpx.post(form["response_url"], json=payload, timeout=10)


def handler(env: dict):
    class SlashCommand(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not verified(env["SLACK_SIGNING_SECRET"], self.headers, body):
                return self.reply(401, {"text": "Bad signature."})
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}  # an empty question: the API says so
            self.reply(200, {"response_type": "ephemeral", "text": "Looking that up…"})
            threading.Thread(target=respond, args=(env, form), daemon=True).start()

        def reply(self, status: int, payload: dict):
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (("Content-Type", "application/json"), ("Content-Length", str(len(data)))):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return SlashCommand


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "3000"))), handler(dict(os.environ))).serve_forever()
