"""Training pipeline: data readers, examples, batching, trainer on cuda / hpu / cpu, evaluation."""
