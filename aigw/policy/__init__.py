"""Gateway policy: authentication, stored keys, cache decisions, per-gateway flags."""
