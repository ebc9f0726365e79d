"""Python client of the ameli authentication service (namespace of the ameli contracts)."""
