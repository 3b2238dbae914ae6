"""The plain-PyTorch training loop, losses and checkpoints."""
