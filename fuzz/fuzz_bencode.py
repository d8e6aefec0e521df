"""atheris target ``bencode``: see :func:`fuzz.targets.bencode`."""

from fuzz._run import run

if __name__ == "__main__":
    run("bencode")
