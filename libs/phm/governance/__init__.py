"""Information governance: checks that identifiers stay in the vault."""
