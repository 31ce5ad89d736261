"""Projects in buckets: addresses, sync and transfers."""
