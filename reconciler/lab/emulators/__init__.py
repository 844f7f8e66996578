"""Programs installed inside the lab's hosts (run there by /usr/bin/python3; standard library
and cryptography only). sgcluster and labhost are also imported by reconciler.lab itself."""
