"""Entry point of the tracking process (`python -m ranksearch.tracking.child FD`): see remote.py."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from ranksearch.tracking.remote import serve

    serve(int(sys.argv[1]))
