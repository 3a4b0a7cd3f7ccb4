"""Reactors: follow the log and record the decisions that events call for. They import domain/, the store
and projections/, never app/."""
