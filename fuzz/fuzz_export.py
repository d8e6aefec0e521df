"""atheris target ``export``: see :func:`fuzz.targets.export_roundtrip`."""

from fuzz._run import run

if __name__ == "__main__":
    run("export")
