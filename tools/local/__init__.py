"""The local stack: AWS in moto, the Ocelot sandbox, the real handlers on loopback (docs/local-stack.md)."""
