"""atheris target ``auth``: see :func:`fuzz.targets.auth_header`."""

from fuzz._run import run

if __name__ == "__main__":
    run("auth")
