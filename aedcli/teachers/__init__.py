"""Object-centric teachers: they find objects, score them, and paint the maps the student learns from."""
