"""Sentiment inference Lambda: loads model_artifacts once per container and serves API Gateway."""
