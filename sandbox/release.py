"""Moved to :mod:`sandbox.query.result`; this name stays until every import uses the new one."""

from sandbox.query.result import AggregateRelease, QueryResult

__all__ = ["AggregateRelease", "QueryResult"]
