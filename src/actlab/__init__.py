"""actlab: experiment families of video action-recognition research on one Slurm engine (docs/families.md)."""
