"""Training: setup, the train step, losses, pixel samplers, the loop."""
