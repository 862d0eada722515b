"""Make ``python -m chargen`` run the command-line interface."""

from chargen.cli import main

if __name__ == "__main__":
    main()
