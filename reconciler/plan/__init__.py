"""Planning: desired state x facts -> the ordered, self-contained Plan."""
