"""Event log codecs, the joiner and DSJSON export."""
