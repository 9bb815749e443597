"""ocelot-sms shared layer: the Ocelot contract, our API models, storage and the two services."""
