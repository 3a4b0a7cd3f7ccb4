"""The web console (issue 22)."""
