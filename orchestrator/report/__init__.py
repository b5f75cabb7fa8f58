"""Reports: tables computed from the store (tables.py), written as markdown and CSV (render.py)."""
