"""The running app follows what ``onboard ingest`` does in another process to the local Chroma folder.

A local Chroma client keeps its vector index in memory: without reopening it,
the app would keep finding a deleted document and never find a new one (the
keyword index alone followed). Checked with the real model and a real
``onboard ingest`` subprocess on the same data folder.
"""

from __future__ import annotations

import os
import subprocess
import sys

from onboard import factories
from onboard.settings import Settings

PARKING = """---
title: Parking
---
# Parking

Staff park in the north garage on level two; visitors use the south lot.
"""

LAPTOPS = """---
title: Laptops
---
# Laptops

The IT desk hands out laptops on your first morning, at the third-floor counter.
"""


def ingest_in_another_process(folder) -> None:
    subprocess.run([sys.executable, "-m", "onboard.cli", "ingest", str(folder)], check=True, timeout=300,
                   capture_output=True, env=os.environ.copy())


def sources(knowledge_base, question: str) -> set[str]:
    return {doc.metadata["source"] for doc in knowledge_base.retrieve(question, mode="dense").documents}


def test_a_running_knowledge_base_sees_documents_added_and_removed_by_onboard_ingest(tmp_path):
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "parking.md").write_text(PARKING, encoding="utf-8")
    ingest_in_another_process(docs)

    settings = Settings()
    knowledge_base = factories.make_knowledge_base(settings)
    assert sources(knowledge_base, "where do I park?") == {"parking.md"}

    (docs / "laptops.md").write_text(LAPTOPS, encoding="utf-8")
    (docs / "parking.md").unlink()
    ingest_in_another_process(docs)

    knowledge_base.refresh(force=True)
    assert sources(knowledge_base, "when do I get my laptop?") == {"laptops.md"}
    assert "parking.md" not in sources(knowledge_base, "where do I park?")


def test_a_rebuild_in_another_process_is_followed_too(tmp_path):
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "parking.md").write_text(PARKING, encoding="utf-8")
    ingest_in_another_process(docs)
    knowledge_base = factories.make_knowledge_base(Settings())
    before = knowledge_base.refresh(force=True)

    (docs / "parking.md").unlink()
    (docs / "laptops.md").write_text(LAPTOPS, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "onboard.cli", "ingest", "--rebuild", str(docs)], check=True,
                   timeout=300, capture_output=True, env=os.environ.copy())

    assert knowledge_base.refresh(force=True) > before  # the rebuilt index numbers its versions on
    assert sources(knowledge_base, "when do I get my laptop?") == {"laptops.md"}
