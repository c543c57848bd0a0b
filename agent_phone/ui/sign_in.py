"""Signing in: the dialog, and the flow that ties it to the controller.

The dialog is opened with ``open()`` (window-modal, never ``exec()``: a
nested event loop inside the qasync loop would re-enter running tasks) and
stays open while the engine signs in, so a failure is shown where the agent
typed. ``SignInFlow`` owns the glue: remembering the platform and agent name
in the settings, the password in the keyring (when there is one), and
turning the engine's ``SignInError`` text into a sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from agent_phone.ui.controller import PhoneController, SessionState
from agent_phone.ui.passwords import PasswordVault
from agent_phone.ui.settings import PLATFORM_URL, USER, SettingsStore, phone_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignInForm:
    platform: str
    user: str
    password: str
    remember_password: bool = False
    #: Store the platform and agent name for next time (the demo does not).
    save_account: bool = True
    #: PhoneSettings fields that override the stored settings for this sign-in
    #: only (the command line's --auto-answer, --mic, ...).
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print the password, even in a traceback
        return f"SignInForm(platform={self.platform!r}, user={self.user!r}, password=***)"


def explain(message: str, platform: str) -> str:
    """The engine's SignInError text, as a sentence for the agent."""
    lowered = message.lower()
    if "wrong user name or password" in lowered:
        return "Wrong agent name or password. Check both and try again."
    if "cannot reach the platform" in lowered:
        return (
            f"Cannot reach the platform at {platform}. Check the address and your "
            f"network, or ask whether the platform is running.\n({message})"
        )
    if "did not answer" in lowered or "closed the connection" in lowered:
        return f"The platform did not complete the sign-in: {message}. Try again shortly."
    return f"Sign-in failed: {message}"


class SignInDialog(QDialog):
    #: The agent pressed Sign In with a complete form (a SignInForm).
    submitted = Signal(object)

    def __init__(self, keyring_available: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._keyring_available = keyring_available
        self._setup_ui()

    def _setup_ui(self) -> None:
        self.setWindowTitle("Sign in to Agent Phone")
        self.setAccessibleName("Sign in")
        self.platform = QLineEdit(self)
        self.platform.setPlaceholderText("ws://host:port/ws")
        self.platform.setAccessibleName("Platform URL")
        self.user = QLineEdit(self)
        self.user.setAccessibleName("Agent name")
        self.password = QLineEdit(self)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setAccessibleName("Password")
        self.remember = QCheckBox("&Remember the password", self)
        self.remember.setAccessibleName("Remember the password in the system keyring")
        if not self._keyring_available:
            self.remember.setEnabled(False)
            self.remember.setText("Remember the password (no system keyring found)")
            self.remember.setToolTip(
                "This computer has no keyring service, so the password is asked at each "
                "sign-in. It is never written to the settings file."
            )
        self.error = QLabel(self)
        self.error.setObjectName("signInError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020;")
        self.error.setAccessibleName("Sign-in error")
        self.error.hide()
        self.status = QLabel(self)
        self.status.setAccessibleName("Sign-in status")

        form = QFormLayout()
        form.addRow("&Platform URL:", self.platform)
        form.addRow("&Agent name:", self.user)
        form.addRow("Pass&word:", self.password)
        for line in (self.platform, self.user, self.password):
            label = form.labelForField(line)
            if isinstance(label, QLabel):
                label.setBuddy(line)

        self.buttons = QDialogButtonBox(self)
        self.sign_in_button = self.buttons.addButton(
            "&Sign In", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.sign_in_button.setAccessibleName("Sign in")
        self.sign_in_button.setDefault(True)
        cancel = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setAccessibleName("Cancel sign-in")
        self.buttons.accepted.connect(self._on_sign_in)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.remember)
        layout.addWidget(self.error)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(420)

    def fill(self, platform: str, user: str, password: str = "") -> None:
        self.platform.setText(platform)
        self.user.setText(user)
        self.password.setText(password)
        first_empty = next(
            (f for f in (self.platform, self.user, self.password) if not f.text()), self.password
        )
        first_empty.setFocus()

    def set_saved_password(self, password: str | None) -> None:
        """The keyring's password for this agent, once read (never overwrites typing)."""
        if password and not self.password.text():
            self.password.setText(password)
            self.remember.setChecked(True)

    def set_busy(self, busy: bool) -> None:
        self.sign_in_button.setEnabled(not busy)
        for line in (self.platform, self.user, self.password):
            line.setReadOnly(busy)
        self.status.setText("Signing in…" if busy else "")

    def show_error(self, text: str) -> None:
        self.set_busy(False)
        self.error.setText(text)
        self.error.setVisible(bool(text))
        if text:
            self.password.setFocus()
            self.password.selectAll()

    def _on_sign_in(self) -> None:
        platform = self.platform.text().strip()
        user = self.user.text().strip()
        password = self.password.text()
        if not platform.startswith(("ws://", "wss://")):
            self.show_error("The platform URL starts with ws:// or wss://.")
            self.platform.setFocus()
            return
        if not user or not password:
            self.show_error("Enter your agent name and password.")
            (self.user if not user else self.password).setFocus()
            return
        self.show_error("")
        self.set_busy(True)
        self.submitted.emit(
            SignInForm(platform, user, password, remember_password=self.remember.isChecked())
        )


class SignInFlow(QObject):
    """Dialog <-> controller <-> settings and keyring, for one window."""

    def __init__(
        self,
        controller: PhoneController,
        store: SettingsStore,
        vault: PasswordVault,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._store = store
        self._vault = vault
        self._dialog: SignInDialog | None = None
        self._pending: SignInForm | None = None
        controller.state_changed.connect(self._on_state)
        controller.sign_in_failed.connect(self._on_failed)

    @property
    def dialog(self) -> SignInDialog | None:
        return self._dialog

    def open_dialog(
        self, parent: QWidget, error: str = "", form: SignInForm | None = None
    ) -> SignInDialog:
        """Open the dialog (or raise the open one), filled from ``form`` or the settings."""
        if self._dialog is None:
            dialog = SignInDialog(self._vault.available, parent)
            dialog.submitted.connect(self.submit)
            dialog.finished.connect(self._on_dialog_finished)
            platform = form.platform if form else self._store.get(PLATFORM_URL)
            user = form.user if form else self._store.get(USER)
            dialog.fill(platform, user)
            self._controller.tasks.spawn(
                "read the saved password", self._fill_saved_password(dialog, platform, user)
            )
            self._dialog = dialog
        self._dialog.show_error(error)
        self._dialog.open()
        return self._dialog

    async def _fill_saved_password(self, dialog: SignInDialog, platform: str, user: str) -> None:
        password = await self._vault.load(platform, user)
        if dialog is self._dialog:
            dialog.set_saved_password(password)

    def submit(self, form: SignInForm) -> None:
        """Sign in with ``form`` (from the dialog, the command line or the demo)."""
        if form.save_account:
            self._store.set(PLATFORM_URL, form.platform)
            self._store.set(USER, form.user)
        self._pending = form
        settings = phone_settings(
            self._store, form.platform, form.user, form.password, **form.overrides
        )
        self._controller.sign_in(settings)

    def _on_state(self, state: SessionState) -> None:
        form = self._pending
        if state is not SessionState.SIGNED_IN or form is None:
            return
        self._pending = None
        if form.save_account:
            if form.remember_password:
                self._controller.tasks.spawn(
                    "save the password",
                    self._vault.save(form.platform, form.user, form.password),
                )
            elif self._dialog is not None:  # unticked in the dialog: forget it
                self._controller.tasks.spawn(
                    "forget the password", self._vault.forget(form.platform, form.user)
                )
        if self._dialog is not None:
            self._dialog.accept()

    def _on_failed(self, message: str) -> None:
        form, self._pending = self._pending, None
        text = explain(message, form.platform if form else "")
        if self._dialog is not None:
            self._dialog.show_error(text)
        elif isinstance(parent := self.parent(), QWidget):
            # Signed in from the command line or the demo: there was no dialog yet.
            self.open_dialog(parent, text, form)

    def _on_dialog_finished(self, _result: int) -> None:
        if self._dialog is not None:
            self._dialog.deleteLater()
            self._dialog = None
