"""Package data: the dashboard's assets and the shipped search spaces (see `ranksearch.resources`).

`dashboards` and `search_spaces` here are relative symlinks to the top-level folders of the
checkout; the wheel carries copies of the files.
"""
