"""Getting data in and out safely: dataset sourcing (download, verify, pin), atomic writes, and readers of generic file formats."""
