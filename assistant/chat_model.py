"""The chat model of ``llm`` mode, built from the answer configuration, and the name it is recorded under.

OpenAI, any OpenAI-compatible endpoint (a local server accepts any key), or
Azure OpenAI (a deployment). The model never retries on its own: the
generative answerer does, within a time budget, so it can tell the person
what is happening and fall back to quoting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from assistant.answering import AnswerConfig


def model_name(config: AnswerConfig) -> str:
    """The model the configuration asks for: the Azure deployment when there is one, else the model."""
    if config.azure_endpoint and config.azure_deployment:
        return config.azure_deployment
    return config.model


def make_chat_model(config: AnswerConfig) -> BaseChatModel:
    """The chat model for ``mode == "llm"``: OpenAI or any compatible endpoint, or Azure OpenAI.

    Streaming, with the usage report requested (a custom ``base_url`` sends it
    only when asked), and no retries of its own.
    """
    common = {
        "model": config.model,
        "temperature": config.temperature,
        "timeout": config.timeout_s,
        "max_retries": 0,
        "streaming": True,
        "stream_usage": True,
    }
    if config.azure_endpoint:
        from langchain_openai import AzureChatOpenAI

        return AzureChatOpenAI(
            azure_endpoint=config.azure_endpoint,
            azure_deployment=config.azure_deployment or config.model,
            api_version=config.api_version,
            api_key=config.api_key,
            **common,
        )
    from langchain_openai import ChatOpenAI

    # Local OpenAI-compatible servers accept any key, but the client insists on one.
    api_key = config.api_key or (SecretStr("not-needed") if config.base_url else None)
    return ChatOpenAI(base_url=config.base_url, api_key=api_key, **common)
