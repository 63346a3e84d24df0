"""Reliability suite: kills, write errors, concurrent writers and readers, safe reading."""
