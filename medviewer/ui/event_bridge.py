"""Adapter from a model :class:`~medviewer.model.Event` to a Qt signal.

Model events are plain callbacks and may fire on any thread (a worker writing labels, for
instance). Routing them through a QObject living on the GUI thread makes Qt queue
cross-thread emissions, so handlers always run where touching widgets and VTK is safe;
emissions on the GUI thread are delivered immediately.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot

from medviewer.model.events import Event


class EventBridge(QObject):
    """Forwards ``event`` to ``handler`` on the thread this bridge lives on (the GUI thread)."""

    fired = Signal(object)

    def __init__(self, event: Event, handler: Callable[..., object], parent: QObject | None = None):
        super().__init__(parent)
        self._event = event
        self._handler = handler
        self.fired.connect(self._deliver)
        event.connect(self._forward)

    def _forward(self, *args) -> None:
        self.fired.emit(args)

    @Slot(object)
    def _deliver(self, args) -> None:
        self._handler(*args)

    def detach(self) -> None:
        """Stop listening; call before the receiving widget goes away."""
        self._event.disconnect(self._forward)
