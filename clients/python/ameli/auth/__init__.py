"""Client of ameli.auth: the generated stubs (``ameli.auth.v1``) and ``AuthClient``."""
