"""Networks and their training: functional losses, module helpers, the device helper and the resumable training loop."""
