"""Backends implementing the storage protocols. SQLite is the embedded default."""
