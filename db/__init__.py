"""Database: SQLAlchemy 2 models, repository functions, Alembic migrations."""
