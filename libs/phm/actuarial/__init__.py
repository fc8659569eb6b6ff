"""Actuarial cost models: segment history and transitions, cost concentration, projections, scenarios, backtest."""
