"""Runtime: devices and processes, checkpoints, preemption, files, errors."""
