"""The processes the factory runs: a Docker engine, devpi (and its replica), an OCI
registry, each with its pid file, health check and credentials. `house.py` brings them
up and down together with the index layout and the catalog."""
