"""Function mode: the compute-module runtime API a module polls, and Contour's job API applications call."""
