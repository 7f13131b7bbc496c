"""factory.toml and every other TOML input: the models (`models.py`), the one loader
that turns any bad input into a ConfigError naming file, line, field and fix
(`loader.py`), and a loaded factory with the paths derived from where it lives
(`factory.py`)."""
