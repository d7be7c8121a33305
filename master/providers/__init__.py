"""a3s-gateway."""
