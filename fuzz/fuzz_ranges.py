"""atheris target ``ranges``: see :func:`fuzz.targets.ranges`."""

from fuzz._run import run

if __name__ == "__main__":
    run("ranges")
