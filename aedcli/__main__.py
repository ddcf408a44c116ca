"""``python -m aedcli`` (also how ``torchrun -m aedcli distill ...`` starts the CLI)."""

from aedcli.cli import main

if __name__ == "__main__":
    main()
