"""An incident-response service on pillbox: the shape of the app whose outage pillbox answers."""
