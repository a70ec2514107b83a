"""Launching sweeps: grid -> manifest + code snapshot -> Slurm arrays (submitit) or a local pool."""
