"""Offline training: the population (pretrained) model."""
