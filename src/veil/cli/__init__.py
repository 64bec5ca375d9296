"""The ``veil`` command: one thin module per command group; heavy imports happen inside commands."""
