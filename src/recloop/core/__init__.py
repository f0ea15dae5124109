"""Types, protocols and errors shared by every part of recloop. Imports nothing heavy."""
