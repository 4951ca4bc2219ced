"""The REST API (FastAPI) under ``/api/v1``: the same answers, conversations and ratings as the pages, for programs.

Every request goes through :class:`service.chat.ChatService` as the identity its
API key stands for (or the person the key acts for), so access, audiences,
rollout, costs and storage are those of every other channel.
"""
