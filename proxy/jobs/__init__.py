"""Work the proxy runs in the background: the Batch API's batches (``runner.py``)."""
