"""The portal's data side and web server: what each dashboard page shows, scoped by the user."""
