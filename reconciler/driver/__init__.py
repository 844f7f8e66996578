"""The remote side: every script csync runs on a host, built from typed values, with its parser; the SSH transport."""
