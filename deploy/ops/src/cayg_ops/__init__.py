"""cayg_ops."""
