"""atheris target ``auth_mutated``: see :func:`fuzz.targets.auth_mutated`."""

from fuzz._run import run

if __name__ == "__main__":
    run("auth_mutated")
