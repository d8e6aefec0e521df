"""atheris target ``index``: see :func:`fuzz.targets.index`."""

from fuzz._run import run

if __name__ == "__main__":
    run("index")
