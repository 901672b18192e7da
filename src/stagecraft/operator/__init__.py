"""The kopf operator: DatabaseMigration resources into migration Jobs, sequenced around rollouts."""
