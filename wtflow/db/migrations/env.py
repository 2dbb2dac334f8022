"""Alembic environment: migrations run on the connection wtflow hands over (see ``wtflow.db.schema``)."""

from alembic import context

from wtflow.db.tables import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
