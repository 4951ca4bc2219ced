"""The two ways of answering from retrieved passages, behind :mod:`assistant.answering`.

``extractive`` quotes the passages' own sentences (offline, the default);
``generative`` asks a chat model, grounded in numbered passages, and maps its
errors to something a person understands.
"""
