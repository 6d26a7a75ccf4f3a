"""Commands that act on a finished run: its card and figures, inspect, publish, export."""
