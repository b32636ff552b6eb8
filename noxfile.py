"""Developer sessions: nox -s tests lint typecheck plugins."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests", "plugins"]


@nox.session
def tests(session: nox.Session) -> None:
    """The README's test suite (installs tsekit and the example plugin)."""
    session.install("-e", ".[test]")
    session.install("./plugins/tsekit-example")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "tsekit", "plugins", "tests", "experiments", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".", "mypy", "types-PyYAML")
    session.run("mypy")


@nox.session
def plugins(session: nox.Session) -> None:
    """Install the example plugin, run its own tests, and check every plugin strictly."""
    session.install("-e", ".", "pytest")
    session.install("-e", "./plugins/tsekit-example")
    session.run("python", "-m", "pytest", "-q", "plugins/tsekit-example/tests", "-p", "no:cacheprovider")
    session.run("tsekit", "--strict-plugins", "plugins", "check")
