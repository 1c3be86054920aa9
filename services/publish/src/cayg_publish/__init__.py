"""cayg_publish."""
