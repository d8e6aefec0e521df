"""atheris target ``patch``: see :func:`fuzz.targets.patch`."""

from fuzz._run import run

if __name__ == "__main__":
    run("patch")
