"""Storage dispatch and demand response: tariffs, the cvxpy optimiser, the rule fallback, MPC, the setpoint
executor and the virtual power plant. See docs/dispatch.md."""
