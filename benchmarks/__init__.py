"""`make bench`: bireco's speed and memory measured side by side against a reference and a bare loop."""
