"""The student network, its input and its weights file."""
