"""`pillbox drill`: replay failure scenarios against a running app while probing its web tier
and streaming good traffic, then report whether pillbox kept its promise."""
