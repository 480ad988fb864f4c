"""Talking-head video -> processed AD-NeRF folder (stages in `pipeline`)."""
