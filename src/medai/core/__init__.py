"""Core abstractions shared by every room: errors, the name registry, configuration, hashing."""
