"""The bot process: settings, dialogue core, channels, crisis layer, the `supportbot` command."""
