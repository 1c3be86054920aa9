"""cayg_shared."""
