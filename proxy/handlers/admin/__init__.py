"""Handlers of what the proxy keeps: usage totals and stored completions."""
