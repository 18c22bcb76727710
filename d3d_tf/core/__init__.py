"""The house's plumbing, imported by every layer and knowing no model or method: CLI error lines,
config -> flags, atomic writes, run locks, fingerprints of reused outputs, progress lines.
"""
