"""Readers (and the stand-in writers) of the chest datasets' native formats: JSRT + SCR, Montgomery, Shenzhen."""
