"""Alembic environment: runs migrations on the engine handed in by ``onboard.db``."""

from alembic import context
from sqlmodel import SQLModel

import assistant.manifest  # noqa: F401  (registers the tables on SQLModel.metadata)
import feedback.models  # noqa: F401

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
