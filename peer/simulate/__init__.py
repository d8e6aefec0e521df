"""A discrete-event network simulator that drives the real swarm scheduler.

Virtual time (:mod:`.loop`), a flow-level max-min fair bandwidth model
(:mod:`.network`), hosts with residential links (:mod:`.population`), the
driver that feeds each downloader's :class:`peer.scheduler.Scheduler`
(:mod:`.swarm`), named scenarios with churn and faults (:mod:`.scenarios`),
the Kumar–Ross bound (:mod:`.bound`) and the report (:mod:`.report`).
See ``docs/simulator.md``.
"""

from .bound import kumar_ross
from .loop import EventLoop, SimulationError
from .network import Network
from .report import Report, build_report
from .scenarios import SCENARIOS, Params, Scenario, register
from .swarm import NodeSpec, SimConfig, Swarm
from .upload import FairShare, SlotLimit, UploadPolicy

__all__ = [
    "SCENARIOS",
    "EventLoop",
    "FairShare",
    "Network",
    "NodeSpec",
    "Params",
    "Report",
    "Scenario",
    "SimConfig",
    "SimulationError",
    "SlotLimit",
    "Swarm",
    "UploadPolicy",
    "build_report",
    "kumar_ross",
    "register",
]
