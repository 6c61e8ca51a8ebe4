"""Alembic environment: online migrations only, against the URL set by alembic_config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from cardsvc.models import Base
from cardsvc.payments import interchange_models as _interchange  # noqa: F401
from cardsvc.payments import models as _payments  # noqa: F401  (registers its tables)

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
