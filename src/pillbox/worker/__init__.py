"""Code that runs inside a worker child: consume subscriptions, run handlers under guards."""
