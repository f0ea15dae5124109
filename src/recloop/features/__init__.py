"""Feature encoding: raw context and action features to model inputs."""
