"""Alembic environment for the checkpoint schema.

`checkpoints.migrate` passes an open connection (already inside the transaction and lock it manages) as
``config.attributes["connection"]``. Without one (Alembic's own command line pointed at this directory), an
engine is made from the ``sqlalchemy.url`` option or ``$IRONLOOP_DB_URL``. The version table is
``ironloop_schema_version``, so these migrations never meet an application's own ``alembic_version``.
"""

from __future__ import annotations

from alembic import context
from ironloop.checkpoints.database import default_db_url, make_engine
from ironloop.checkpoints.migrate import VERSION_TABLE
from ironloop.checkpoints.schema import metadata_obj
from sqlalchemy.engine import Connection

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata_obj,
        version_table=VERSION_TABLE,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or default_db_url(),
        target_metadata=metadata_obj,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (connection := config.attributes.get("connection")) is not None:
    run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or default_db_url())
    try:
        with engine.connect() as connection:
            run(connection)
            connection.commit()
    finally:
        engine.dispose()
