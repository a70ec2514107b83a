"""actlab: per-user continual adaptation of video action-recognition models, on Slurm."""
