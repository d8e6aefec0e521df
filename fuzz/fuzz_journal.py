"""atheris target ``journal``: see :func:`fuzz.targets.journal`."""

from fuzz._run import run

if __name__ == "__main__":
    run("journal")
