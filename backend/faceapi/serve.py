"""Start the service: check every setting, then hand over to gunicorn with the project's config.

Usage: python -m faceapi.serve [extra gunicorn arguments]   (the Procfile's and scripts/serve's command)

``gunicorn --config gunicorn.conf.py`` checks our settings too, but gunicorn reads
``WEB_CONCURRENCY`` itself while it imports, before any config file, and a bad
value ends it there with a raw traceback. Checking first here names that variable
with all the others, in one message, and exits with status 2.
"""

from __future__ import annotations

import os
import pathlib
import sys

from faceapi.config import ConfigError
from faceapi.config import process_settings

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the checkout: backend/faceapi/serve.py


def main(argv: list[str] | None = None) -> int:
    """Exec gunicorn when the environment is valid; otherwise print why and return 2."""
    try:
        process_settings()
    except ConfigError as error:
        print(f"faceapi: {error}", file=sys.stderr)
        return 2
    started_in = checkout_of(pathlib.Path.cwd())
    if started_in is not None and started_in != ROOT:
        # A virtualenv shared by checkouts (FACEAPI_VENV) runs the one whose `pip install -e .` came last.
        print(f"faceapi: started in the checkout {started_in}, but this Python's faceapi package is the one in "
              f"{ROOT}; start it with {started_in / 'scripts' / 'serve'}, which serves its own checkout",
              file=sys.stderr)
        return 2
    gunicorn = pathlib.Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), "--config", str(ROOT / "gunicorn.conf.py"), *(sys.argv[1:] if argv is None else argv)]
    os.chdir(ROOT)  # relative paths (FACEAPI_STORE_PATH) mean the same as under the Procfile
    os.execv(command[0], command)
    return 0  # not reached


def checkout_of(directory: pathlib.Path) -> pathlib.Path | None:
    """The faceapi checkout that holds ``directory`` (this file's layout), if any."""
    for candidate in (directory, *directory.parents):
        if (candidate / "gunicorn.conf.py").is_file() and (candidate / "backend" / "faceapi" / "serve.py").is_file():
            return candidate.resolve()
    return None


if __name__ == "__main__":
    sys.exit(main())
