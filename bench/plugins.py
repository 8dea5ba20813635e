"""The benchmark's own plugin: records when the plugin started, for pickup latency."""

import time

from plugins.base import Plugin


class Mark(Plugin):
    def run(self, payload, ctx):
        return {"t": time.time()}
