"""Runnable examples of the SDK (python -m mchat_sdk.examples.<name>)."""
