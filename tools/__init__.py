"""Developer tooling: template helpers, the local stack, the Ocelot sandbox."""
