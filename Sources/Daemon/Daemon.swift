// Daemon module (placeholder; filled in by its issue).
