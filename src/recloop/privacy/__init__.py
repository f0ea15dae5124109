"""Privacy: forget everything about one user, and delete raw logs by age."""
