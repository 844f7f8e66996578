"""Import: write the desired state of a live site."""
