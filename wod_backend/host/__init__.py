"""Setting up this host: `setup` and its steps (postfix and the schedule, the firewall,
the managed hub and its kernels, data), maintenance, the demo and example
configurations, the migration from the original backend, and `doctor`."""
