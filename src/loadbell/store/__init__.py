"""Storage: tables, engine set-up, migrations and the queries the rest of the code stages."""
