"""Channels: thin adapters that turn a platform's messages into dialogue turns and back."""
