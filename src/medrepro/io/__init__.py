"""Readers and writers for the datasets' native formats and the common form."""
