"""Facts: the one-round-trip probe and the typed facts it yields."""
