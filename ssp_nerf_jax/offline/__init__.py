"""Offline rendering: jobs, their inputs, trained workdirs, mp4 files."""
