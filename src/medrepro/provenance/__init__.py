"""What every number traces back to: job records and the chain behind a table cell, raw-data pins, hashing, the RO-Crate export and the run-time breakdown."""
