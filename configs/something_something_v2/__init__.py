"""Something-Something v2 configs."""
