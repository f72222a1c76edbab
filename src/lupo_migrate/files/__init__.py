"""Migration files on disk: discovery, the directory walk, headers (their YAML and JSON
schema), the manifest, and the front-matter edits of documentation files.

May import: :mod:`lupo_migrate.core`.
"""
