"""``python -m recloop.cli``: the `recloop` command."""

from recloop.cli import app

if __name__ == "__main__":
    app()
