"""atheris target ``receipt``: see :func:`fuzz.targets.receipt`."""

from fuzz._run import run

if __name__ == "__main__":
    run("receipt")
