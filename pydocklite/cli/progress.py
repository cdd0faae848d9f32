"""Docker's per-layer progress for pull and push: on a terminal one line per layer, redrawn in
place with a bar while data moves; otherwise each layer's status printed once as it changes."""
from __future__ import annotations

import threading

from pydocklite.humanize import human_size
from pydocklite.termsafe import escape_line


class LayerProgress:
    """Called with events that have .layer, .status, .current, .total. `active` is the
    status that carries a byte count ("Downloading", "Pushing"); without a terminal it is
    printed once if `print_active`, else left out (docker pull prints no Downloading lines)."""

    def __init__(self, out, tty: bool, active: str, print_active: bool = False):
        self.out, self.tty = out, tty
        self.active, self.print_active = active, print_active
        self.order = []
        self.last = {}
        self.lock = threading.Lock()

    def __call__(self, ev) -> None:
        if not ev.layer:
            return
        with self.lock:
            if self.tty:
                self._redraw(ev.layer, escape_line(self._text(ev)))
            elif (ev.status != self.active or self.print_active) \
                    and self.last.get(ev.layer) != ev.status:
                self.last[ev.layer] = ev.status
                self.out.write(escape_line(f"{ev.layer}: {ev.status}") + "\n")
            self.out.flush()

    def _text(self, ev) -> str:
        if ev.status == self.active and ev.total:
            width = 50
            filled = min(width, int(width * ev.current / ev.total))
            bar = "=" * max(0, filled - 1) + (">" if filled else "") + " " * (width - filled)
            return (f"{ev.layer}: {self.active} [{bar}]  "
                    f"{human_size(ev.current)}/{human_size(ev.total)}")
        return f"{ev.layer}: {ev.status}"

    def _redraw(self, layer: str, text: str) -> None:
        if layer not in self.last:
            self.order.append(layer)
            self.out.write(text + "\n")
        else:
            up = len(self.order) - self.order.index(layer)
            self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")
        self.last[layer] = text
