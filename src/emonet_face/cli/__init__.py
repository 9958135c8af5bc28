"""Command-line interface: a thin layer over the library (``emonet-face --help``).

Each command imports the library inside its function: importing torch, transformers and the model
code takes seconds, and ``emonet-face --help`` or a command that does not need them should not pay
for it. Nothing below the CLI imports it (import-linter checks this in CI).
"""
