"""Media shared by the phone, the platform's media edge and the caller (no Qt)."""
