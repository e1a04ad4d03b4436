"""Encrypted store-and-forward sync between the clinic box and the review hub."""
