"""The append-only event log on PostgreSQL, through asyncpg."""
