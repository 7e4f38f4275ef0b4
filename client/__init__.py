"""``ask``: the terminal client of Ask the Applicant.

It speaks only the public HTTP contract (``POST /openai-response/sse``) and imports nothing
from the service's layers, so it works against any deployment.
"""
