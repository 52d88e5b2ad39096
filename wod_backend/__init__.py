"""wod-backend: the backend of a Workshops-on-Demand platform.

Orders flow one way: mail -> order -> plan -> steps on the system -> report to the frontend.
This package keeps its import cheap: procmail starts one process per mail.
"""

__version__ = "0.1.0"
