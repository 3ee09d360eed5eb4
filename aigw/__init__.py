"""aigw: a self-hosted AI gateway speaking Cloudflare AI Gateway's wire API."""

__version__ = "0.1.0"
