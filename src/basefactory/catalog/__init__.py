"""The catalog: which images and wheels go together, read from the registry and devpi."""
