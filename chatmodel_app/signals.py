"""Signals for host applications."""

from django.dispatch import Signal

# Sent when a run ends, whatever its status. Keyword arguments: ``run`` (the Run row)
# and ``response`` (the LLMResponse returned to the caller). Sender: the Run class.
run_finished = Signal()
