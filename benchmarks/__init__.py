"""`make bench`: our handler against the usual ways of serving the same model, side by side."""
