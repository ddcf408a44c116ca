"""Training the student: settings, data, losses, the epoch loops and the run that ties them together."""
