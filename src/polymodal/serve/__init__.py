"""FastAPI app and a static search page for a run folder."""
