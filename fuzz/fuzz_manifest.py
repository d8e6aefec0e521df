"""atheris target ``manifest``: see :func:`fuzz.targets.manifest`."""

from fuzz._run import run

if __name__ == "__main__":
    run("manifest")
