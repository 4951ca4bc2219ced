"""The settings object: environment variables with the ONBOARD_ prefix, nested with __, and .env."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from onboard.settings import Settings


def test_defaults_live_under_the_data_folder(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{(tmp_path / 'onboard.db').as_posix()}"
    assert settings.chroma_path == tmp_path / "chroma"
    assert settings.embedding.cache_dir is not None


def test_nested_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ONBOARD_RETRIEVAL__K", "8")
    monkeypatch.setenv("ONBOARD_CHAT__STARTER_QUESTIONS", '["Where is the office?", "Who pays for my laptop?"]')
    monkeypatch.setenv("ONBOARD_CHAT__MAX_MESSAGE_CHARS", "500")
    settings = Settings()
    assert settings.retrieval.k == 8
    assert settings.chat.starter_questions == ["Where is the office?", "Who pays for my laptop?"]
    assert settings.chat.max_message_chars == 500


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("ONBOARD_COLLECTION=policies\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert Settings().collection == "policies"


def test_invalid_values_are_refused_with_the_field_named(monkeypatch):
    monkeypatch.setenv("ONBOARD_RETRIEVAL__K", "0")
    with pytest.raises(ValidationError, match="retrieval.k"):
        Settings()
    monkeypatch.delenv("ONBOARD_RETRIEVAL__K")
    monkeypatch.setenv("ONBOARD_EMBEDDING__BACKEND", "openai")
    with pytest.raises(ValidationError, match="BASE_URL"):
        Settings()


@pytest.mark.parametrize("variable", ["ONBOARD_COLLECTION", "ONBOARD_SUPPORT__COLLECTION"])
def test_a_collection_name_cannot_take_the_name_of_another_s_search_keys(monkeypatch, variable):
    monkeypatch.setenv(variable, "handbook-keys")
    with pytest.raises(ValidationError, match="search keys"):
        Settings()
