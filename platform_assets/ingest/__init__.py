"""Ingest: landing files read whole into the lake, hashed for data versions."""
