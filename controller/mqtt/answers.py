"""The worker side of commands: apply valid lockdown commands, then journal every answer.

Why a separate step: the network thread only sorts messages (commands.py); acting on the door
and writing the journal happen here, in the link's worker, and a valid command is acknowledged
to the broker only after its answer is journaled (``manual_ack``), so a crash in between gets it
re-delivered from the persistent session.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import events as ev
from ..vocabulary import DecisionCode
from .commands import Pending

if TYPE_CHECKING:
    from .link import MqttLink

log = logging.getLogger("controller.mqtt")


def _apply(link: MqttLink, pending: Pending) -> None:
    command = pending.command
    c = link.controller
    extra = {"level": command["level"]} if command["action"] == "start" else {}
    act = c.start_lockdown if command["action"] == "start" else c.end_lockdown
    try:
        decision = act(actor=command["by"], reason=command["reason"] or "mqtt command", source="mqtt",
                       command_id=command["id"], **extra)
    except Exception:
        log.exception("mqtt: command on %s failed", pending.topic[:120])
        link.intake.reject(pending.topic, "error: the command could not be processed", pending.payload,
                           command["by"])
        return
    if decision.code != DecisionCode.OK:      # 'already' or 'fault': still answer the command with an event
        log.warning("mqtt: command %s refused: %s: %s", command["id"][:64], decision.code, decision.reason)
        link.intake.reject(pending.topic, f"{decision.code}: {decision.reason}", pending.payload, command["by"])
        return
    link.commands_accepted += 1
    log.warning("mqtt: lockdown %s by %r (command %s)", command["action"], command["by"], command["id"])


def answer_commands(link: MqttLink, final: bool = False) -> None:
    """Apply pending commands, journal refusals (detailed, then summarized), acknowledge."""
    pending = link.intake.take_commands()
    for p in pending:
        _apply(link, p)
    # Lost writes are counted by the core for journal_recovered (no silent gap in the audit).
    journal = link.controller.adapter_recorder()
    for r in link.intake.take_rejections():
        log.warning("mqtt: command on %s refused: %s", r.topic[:120], r.reason)
        try:
            journal.append(ev.COMMAND_REJECTED, actor=r.actor, source="mqtt", topic=r.topic, reason=r.reason,
                           command_id=r.command_id(), size=len(r.payload))
        except Exception:
            log.exception("mqtt: could not journal command_rejected")
    summary = link.intake.take_summary(force=final)
    if summary is not None:
        log.warning("mqtt: %d more commands refused in %.0f s: %s", summary["total"], summary["seconds"],
                    summary["reasons"])
        try:
            journal.append(ev.COMMANDS_REJECTED, source="mqtt", **summary)
        except Exception:
            log.exception("mqtt: could not journal commands_rejected")
    for p in pending:
        link._ack(p)
