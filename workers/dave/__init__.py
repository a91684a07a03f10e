"""Discord DAVE media layer — pure core."""
