"""Risk models: specs, training, measures, MLflow registration and the champion gate."""
