"""Bar sources: each turns something outside the lake into normalized bar frames.

A source never writes files itself; it hands frames to ``Lake.write_bars``, which checks them.
"""
