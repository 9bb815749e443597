"""The chaos run: N messages through a local stack of its own with Ocelot and DynamoDB misbehaving
(`profile`: what goes wrong and what is sent; `driver`: the client; `verify`: the checks; `run`: one
run end to end). What it guarantees and what the last runs showed: docs/reliability.md."""
