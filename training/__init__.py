"""Maintainer side: tiny-model fixtures, fine-tuning, evaluation and GGUF export."""
