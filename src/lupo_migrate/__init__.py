"""lupo_migrate: safe, observable and recoverable database schema migrations."""
