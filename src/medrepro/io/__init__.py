"""Generic readers and writers of image file formats (no study's layout)."""
