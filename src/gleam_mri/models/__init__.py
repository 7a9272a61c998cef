"""Unrolled reconstruction networks: regularisers, data consistency, iterations."""
