"""Sub-commands of the ``webseed`` CLI, one module each.

Every module here defines ``register(app: typer.Typer) -> None``; the CLI finds
them by listing this package, so a new command is a new module and nothing else.
"""
