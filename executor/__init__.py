"""The executor: runs every certified layer's Athena transactions against LevelDB state."""
