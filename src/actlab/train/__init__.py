"""Training shared by the families: the resumable supervised loop (loop.py)."""
