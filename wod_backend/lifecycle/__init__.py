"""Students' lifecycle beyond orders: `sweep` (abuse), `expire` (overdue workshops),
`reconcile` (the journal, the hub and the frontend compared)."""
