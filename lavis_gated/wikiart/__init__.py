"""Commands that make the real run's style inputs: the WikiArt style CNN and the image -> style table."""
