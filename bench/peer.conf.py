"""gunicorn settings of the peer (bench/peer_app.py): what a new user runs, sync workers and no preload.

Passed explicitly so that gunicorn does not pick up the project's gunicorn.conf.py from the working directory.
"""

worker_class = "sync"
timeout = 300
control_socket_disable = True
