"""cayg_normalize."""
