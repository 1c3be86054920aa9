"""cayg_ingest."""
