"""Running methods over user streams: the online loop, checkpoints, stream and transfer jobs."""
