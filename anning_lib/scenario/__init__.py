"""Scenario simulation (模拟仿真): a scenario file (:mod:`.spec`) changes the park (:mod:`.changes`); both cases
run on the same history (:mod:`.history`) with the same forecasts and dispatch (:mod:`.simulate`) and are
compared (:mod:`.engine`). See docs/scenario.md."""
