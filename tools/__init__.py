"""Repository tools (not deployed): checks of the code's shape that CI runs."""
