"""The phone's errors, in their own module so that the engine and its
platform session both raise them without importing each other."""

from __future__ import annotations


class PhoneError(Exception):
    """A command that cannot be carried out; the message says why."""


class SignInError(PhoneError):
    pass
