// Florence2 module (placeholder; filled in by its issue).
