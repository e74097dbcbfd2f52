"""deploykit's built-in targets, each an ordinary pluggy plugin (import name ``deploykit_plugins``)."""
