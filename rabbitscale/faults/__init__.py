"""Faults: one interface (``apply(ctx)`` / ``heal(ctx)``), the catalogue every ``--fault`` and
every nemesis kind comes from, network partitions with iptables, and the nemesis that
schedules fault objects."""
