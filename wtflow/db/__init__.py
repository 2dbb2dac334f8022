"""Run history in a SQL database (SQLAlchemy 2.0): tables, connection and the recorder."""
