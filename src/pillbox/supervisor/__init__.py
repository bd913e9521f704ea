"""The root process of `pillbox run`: starts, watches, restarts and post-mortems children.
It never imports or runs user code."""
