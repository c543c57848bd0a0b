"""Agent Phone: a WebRTC softphone for contact-center agents, and its platform."""

__version__ = "0.1.0"
