"""The refresh report: charts (SVG), sections from the published marts, and the self-contained page."""
