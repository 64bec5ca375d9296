"""Confined ML-as-a-service (Chiron-style): sealed data, confined training, black-box use."""
