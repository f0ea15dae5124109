"""The parts ``recloop.client.Loop`` is assembled from, each with one job."""
