"""A reference portal gateway of the ameli login (``ameli_portal.app``), run by ``ameli-portal``."""
