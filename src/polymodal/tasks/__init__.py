"""Tasks wire encoders, heads and losses together: encode, retrieval, classification, generation."""
