"""number.* checks: the agent's numbers (format, policy, identity) and the opt-in test call."""
