"""Pure domain rules: statuses, events, filters, inheritance. No I/O lives here."""
