"""Video models (a backbone + a verb head and a noun head), their factory, checkpoint loading."""
