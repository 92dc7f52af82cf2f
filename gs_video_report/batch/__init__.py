"""Orchestration: turning checked inputs into lessons with the services, deciding retries."""
