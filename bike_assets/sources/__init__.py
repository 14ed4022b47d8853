"""Where raw counts come from: the Paris Open Data API or the embedded synthetic city."""
