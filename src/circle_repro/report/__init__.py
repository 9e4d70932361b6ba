"""Reporting helpers: published paper targets and comparison tables."""
