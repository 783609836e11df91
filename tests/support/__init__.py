"""Helpers shared by the tests (and `bench/hosts.py`): the test environment, bounded waits,
server groups, worker processes, fault counting. Test modules import from here, never from each other."""
