"""The park simulator: physical models standing in for the real devices (PV, loads, boilers, storage, meters)."""

from anning_lib.sim.park import ParkSimulator, to_long

__all__ = ["ParkSimulator", "to_long"]
