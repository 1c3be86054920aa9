"""cayg_standins."""
