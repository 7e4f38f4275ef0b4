"""Cross-cutting helpers with no knowledge of the layers: deadlines and the server's lifecycle.

Any layer may import this package; it imports none of them.
"""
