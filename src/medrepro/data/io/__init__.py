"""Generic readers and writers of image file formats, and of the CSV files rules write (no study's layout)."""
