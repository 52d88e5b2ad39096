"""Pure tests: no root, no service (parsing, plans, policy, templates, state, layout)."""
