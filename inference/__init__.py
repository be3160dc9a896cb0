"""Inference: model loading, prompt building, batching scheduler, OpenAI-compatible worker and client."""
