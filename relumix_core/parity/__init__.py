"""Parity checks of this implementation against the official-code fixtures.

Run ``python -m relumix_core.parity PATH`` with a fixture ``.json`` or a key manifest.
"""
