"""Small helpers shared by the knowledge-base tests: fixture corpora and manifest look-ups."""

from __future__ import annotations

import textwrap
from pathlib import Path

from sqlmodel import Session, select

from assistant.manifest import IndexedFile, IngestRun


def write_docs(root: Path, docs: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` under ``root`` (dedented) and return ``root``."""
    for name, text in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def manifest(engine, collection: str) -> dict[str, IndexedFile]:
    with Session(engine) as session:
        rows = session.exec(select(IndexedFile).where(IndexedFile.collection == collection)).all()
        return {row.source: row for row in rows}


def manifest_ids(engine, collection: str) -> set[str]:
    return {cid for row in manifest(engine, collection).values() for cid in row.chunk_ids}


def runs(engine, collection: str) -> list[IngestRun]:
    with Session(engine) as session:
        return list(
            session.exec(select(IngestRun).where(IngestRun.collection == collection).order_by(IngestRun.id)).all()
        )


def embedded_texts(fake) -> list[str]:
    """Every text the fake embeddings were asked to embed as a document, in order."""
    return [text for call in fake.calls for text in call]


# A small handbook about different topics; salary.md is for HR only.
HANDBOOK = {
    "time-off.md": """
        ---
        title: Time off
        ---
        # Time off

        Everyone gets twenty days of paid vacation per year. Book vacation in the HR portal
        and tell your manager two weeks ahead.

        ## Sick leave

        Sick leave is unlimited; tell your team in the morning when you are ill.
    """,
    "it/laptop.md": """
        # Laptops

        IT ships a laptop before your first day. Report broken hardware to the helpdesk in
        the #it-help channel. Laptops are replaced every three years.
    """,
    "hr/salary.md": """
        ---
        title: Salary bands
        audience: hr
        ---
        # Salary bands

        Salary bands are reviewed by the compensation committee every quarter. The
        quokka matrix lists every band and its range.
    """,
    "office/kitchen.md": """
        ---
        url: https://handbook.example.com/kitchen
        ---
        # Kitchen

        The office kitchen has free coffee and tea. Clean your mug before you leave;
        the dishwasher runs at six.
    """,
    "security/passwords.md": """
        # Passwords

        Use the company password manager for every account and turn on two-factor
        authentication. Never share passwords over chat.
    """,
}


def indexed_folder(root: Path, docs: dict[str, str], embeddings) -> Path:
    """A data folder under ``root`` with ``docs`` written and indexed as the app would (its own SQLite manifest)."""
    from assistant.ingest import ingest
    from onboard import factories
    from onboard.settings import Settings

    folder = write_docs(root / "handbook", docs)
    settings = Settings(data_dir=root / "data", support={"enabled": False})
    engine = factories.make_engine(settings)
    try:
        ingest([folder], store=factories.make_store(settings, embeddings), embeddings=embeddings, engine=engine,
               options=factories.ingest_options(settings))
    finally:
        engine.dispose()
    return root / "data"
