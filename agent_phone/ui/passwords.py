"""Remembered passwords, in the system keyring and nowhere else.

When no keyring backend exists (a headless box, a minimal desktop),
``available`` is False, nothing is stored, and the sign-in dialog says the
password will be asked for each time. Keyring calls run in a worker thread:
the Secret Service can wait on an unlock prompt for as long as the user
takes, and the shared Qt/asyncio loop must never block (STYLE.md). Passwords
never appear in logs.
"""

from __future__ import annotations

import asyncio
import logging

import keyring
import keyring.backend
import keyring.errors

logger = logging.getLogger(__name__)

SERVICE = "agent-phone"


def _account(platform: str, user: str) -> str:
    # One entry per agent per platform: the same name on two platforms is two accounts.
    return f"{user}@{platform}"


class PasswordVault:
    def __init__(self, backend: keyring.backend.KeyringBackend | None = None) -> None:
        self._backend = backend if backend is not None else keyring.get_keyring()

    @property
    def available(self) -> bool:
        # keyring's "fail" backend (priority 0) is what it picks when there is none.
        try:
            return float(self._backend.priority) > 0
        except Exception:  # a backend whose priority check itself fails is unusable
            return False

    async def load(self, platform: str, user: str) -> str | None:
        if not self.available or not platform or not user:
            return None
        try:
            return await asyncio.to_thread(
                self._backend.get_password, SERVICE, _account(platform, user)
            )
        except keyring.errors.KeyringError as exc:
            logger.warning("cannot read the saved password of %s: %s", user, exc)
            return None

    async def save(self, platform: str, user: str, password: str) -> None:
        if not self.available:
            return
        try:
            await asyncio.to_thread(
                self._backend.set_password, SERVICE, _account(platform, user), password
            )
            logger.info("password of %s saved in the keyring", user)
        except keyring.errors.KeyringError as exc:
            logger.warning("cannot save the password of %s: %s", user, exc)

    async def forget(self, platform: str, user: str) -> None:
        if not self.available:
            return
        try:
            await asyncio.to_thread(
                self._backend.delete_password, SERVICE, _account(platform, user)
            )
        except keyring.errors.PasswordDeleteError:
            pass  # nothing was saved
        except keyring.errors.KeyringError as exc:
            logger.warning("cannot delete the saved password of %s: %s", user, exc)
