"""Probes: behaviour, propensity, latent and dataset audits, and their result records."""
