"""One thin module per DVC stage (and the promote/predict user commands)."""
