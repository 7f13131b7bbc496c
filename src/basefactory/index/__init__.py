"""devpi: the index client and the factory's index layout (user, common, one per platform)."""
