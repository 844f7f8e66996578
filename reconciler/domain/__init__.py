"""What DSAU, Serviceguard and cfengine are: paths and names, parsers of their output, pure decisions."""
