"""``python -m connectomes`` and the ``connectomes`` command: the thread policy first, then the CLI.

OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads, so it is set here, before anything imports torch
(core.runtime says why).
"""

from .core.runtime import passive_wait


def main(argv: list[str] | None = None) -> int:
    passive_wait()
    from .cli import main as cli_main  # loads torch: after the wait policy is set

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
