"""sam local on loopback: the Docker engine and Lambda image scripts, and the --env-vars file."""
